import NIOCore

/// Splits a byte stream into lines ended by `\n` (a preceding `\r` is not accepted), refusing any
/// line longer than the limit as soon as the limit is passed, before waiting for its end.
public struct LineFrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = String

    /// Longest line accepted, without its line feed.
    public let maximumLength: Int

    public init(maximumLength: Int) {
        self.maximumLength = maximumLength
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let line = try nextLine(from: &buffer) else { return .needMoreData }
        context.fireChannelRead(wrapInboundOut(line))
        return .continue
    }

    /// Takes the next whole line off `buffer`, or returns nil until one has arrived.
    public func nextLine(from buffer: inout ByteBuffer) throws(WireError) -> String? {
        let searchLength = min(buffer.readableBytes, maximumLength + 1)
        guard let newline = buffer.readableBytesView.prefix(searchLength).firstIndex(of: UInt8(ascii: "\n")) else {
            if buffer.readableBytes > maximumLength { throw .lineTooLong(limit: maximumLength) }
            return nil
        }
        let length = newline - buffer.readerIndex
        let bytes = buffer.readBytes(length: length)!
        buffer.moveReaderIndex(forwardBy: 1)
        guard let line = String(validating: bytes, as: UTF8.self) else { throw .notText }
        // In UTF-8 the control characters below 0x20 and 0x7f are single bytes no other character contains.
        guard !bytes.contains(where: { $0 < 0x20 || $0 == 0x7f }) else { throw .controlCharacter }
        return line
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }
}

/// A malformed message on the wire. Each case says what was wrong in words a log reader understands.
public enum WireError: Error, Equatable, CustomStringConvertible {
    case lineTooLong(limit: Int)
    case notText
    case controlCharacter
    case frameTooLarge(length: Int, limit: Int)
    case malformed(String)
    case closed

    public var description: String {
        switch self {
        case .lineTooLong(let limit): return "a line is longer than \(limit) bytes"
        case .notText: return "a line is not UTF-8 text"
        case .controlCharacter: return "a line contains a control character"
        case .frameTooLarge(let length, let limit): return "a frame of \(length) bytes is larger than the limit of \(limit)"
        case .malformed(let reason): return reason
        case .closed: return "the other side closed the connection"
        }
    }
}
