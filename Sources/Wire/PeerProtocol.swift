import NIOCore

/// One frame of the peer wire protocol: `[length: UInt32 big-endian][type: UInt8][payload]`,
/// where the length counts the type byte and the payload (see docs/PROTOCOL.md).
public enum PeerFrame: Equatable, Sendable {
    /// Client → server, first: which file (root hash) the client wants.
    case hello(file: FileID)
    /// Which pieces the sender has, one bit per piece, most significant bit first.
    case bitfield([UInt8])
    /// Ask for `length` bytes of `piece` starting at `offset`.
    case request(piece: UInt32, offset: UInt32, length: UInt32)
    /// Bytes of a piece.
    case piece(piece: UInt32, offset: UInt32, data: ByteBuffer)
    /// The sender will not serve: a code and a sentence.
    case reject(code: FailureCode, message: String)
    /// The sender has verified one more piece since its bitfield.
    case have(piece: UInt32)

    /// Largest block a request may ask for.
    public static let maximumBlockLength: UInt32 = 1024 * 1024
    /// Largest frame accepted (a full block plus its header).
    public static let maximumFrameLength = Int(maximumBlockLength) + 64
    /// Largest REJECT payload (code, space and message) in bytes.
    public static let maximumRejectLength = 1024
    /// Largest bitfield accepted (one bit per piece of the largest layout).
    public static let maximumBitfieldLength = 262_144 / 8

    var type: UInt8 {
        switch self {
        case .hello: return 1
        case .bitfield: return 2
        case .request: return 3
        case .piece: return 4
        case .reject: return 5
        case .have: return 6
        }
    }

    /// Appends the encoded frame to `buffer`.
    public func encode(into buffer: inout ByteBuffer) {
        let lengthIndex = buffer.writerIndex
        buffer.writeInteger(UInt32(0))
        buffer.writeInteger(type)
        switch self {
        case .hello(let file):
            buffer.writeBytes(file.bytes)
        case .bitfield(let bits):
            buffer.writeBytes(bits)
        case .request(let piece, let offset, let length):
            buffer.writeMultipleIntegers(piece, offset, length)
        case .piece(let piece, let offset, var data):
            buffer.writeMultipleIntegers(piece, offset)
            buffer.writeBuffer(&data)
        case .reject(let code, let message):
            var text = message
            while code.rawValue.utf8.count + 1 + text.utf8.count > PeerFrame.maximumRejectLength { text.removeLast() }
            buffer.writeString(text.isEmpty ? code.rawValue : "\(code.rawValue) \(text)")
        case .have(let piece):
            buffer.writeInteger(piece)
        }
        buffer.setInteger(UInt32(buffer.writerIndex - lengthIndex - 4), at: lengthIndex)
    }
}

/// Splits a byte stream into ``PeerFrame``s. The length prefix is checked against the limit
/// before any body is awaited, and every payload is checked against its type's exact shape.
public struct PeerFrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = PeerFrame

    public init() {}

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try Self.nextFrame(from: &buffer) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }

    /// Takes the next whole frame off `buffer`, or returns nil until one has arrived.
    public static func nextFrame(from buffer: inout ByteBuffer) throws(WireError) -> PeerFrame? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
        guard length >= 1, Int(length) <= PeerFrame.maximumFrameLength else {
            throw .frameTooLarge(length: Int(length), limit: PeerFrame.maximumFrameLength)
        }
        guard buffer.readableBytes >= 4 + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: 4)
        var body = buffer.readSlice(length: Int(length))!
        let type: UInt8 = body.readInteger()!
        return try frame(type: type, body: &body)
    }

    static func frame(type: UInt8, body: inout ByteBuffer) throws(WireError) -> PeerFrame {
        switch type {
        case 1:
            guard body.readableBytes == 32, let file = FileID(bytes: body.readBytes(length: 32)!) else { throw .malformed("a HELLO frame must hold a 32-byte root hash") }
            return .hello(file: file)
        case 2:
            guard body.readableBytes <= PeerFrame.maximumBitfieldLength else { throw .malformed("a bitfield longer than any file needs") }
            return .bitfield(body.readBytes(length: body.readableBytes)!)
        case 3:
            guard body.readableBytes == 12, let (piece, offset, length) = body.readMultipleIntegers(as: (UInt32, UInt32, UInt32).self) else {
                throw .malformed("a REQUEST frame must hold piece, offset and length")
            }
            guard length > 0, length <= PeerFrame.maximumBlockLength else { throw .malformed("a request for \(length) bytes") }
            return .request(piece: piece, offset: offset, length: length)
        case 4:
            guard body.readableBytes >= 8, let (piece, offset) = body.readMultipleIntegers(as: (UInt32, UInt32).self) else {
                throw .malformed("a PIECE frame must hold piece and offset")
            }
            return .piece(piece: piece, offset: offset, data: body.readSlice(length: body.readableBytes)!)
        case 5:
            // A ``FailureCode``, then optionally one space and a sentence; split on
            // the byte, not on characters, which can join a space to what precedes it.
            let bytes = body.readBytes(length: body.readableBytes)!
            guard bytes.count <= PeerFrame.maximumRejectLength else { throw .malformed("a REJECT frame longer than \(PeerFrame.maximumRejectLength) bytes") }
            let space = bytes.firstIndex(of: UInt8(ascii: " ")) ?? bytes.count
            guard let code = FailureCode(wire: String(decoding: bytes[..<space], as: UTF8.self)) else {
                throw .malformed("a REJECT frame must start with a known failure code")
            }
            let rest = space < bytes.count ? Array(bytes[(space + 1)...]) : []
            guard let message = String(validating: rest, as: UTF8.self), !message.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }),
                  space == bytes.count || !message.isEmpty
            else { throw .malformed("a REJECT frame's message must be UTF-8 text without control characters") }
            return .reject(code: code, message: message)
        case 6:
            guard body.readableBytes == 4, let piece = body.readInteger(as: UInt32.self) else { throw .malformed("a HAVE frame must hold a piece number") }
            return .have(piece: piece)
        default:
            throw .malformed("unknown frame type \(type)")
        }
    }
}

/// Writes ``PeerFrame``s as bytes.
public final class PeerFrameEncoder: MessageToByteEncoder {
    public typealias OutboundIn = PeerFrame

    public init() {}

    public func encode(data: PeerFrame, out: inout ByteBuffer) throws {
        data.encode(into: &out)
    }
}
