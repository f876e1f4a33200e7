import NIOCore
import NIOEmbedded
import Testing
import Wire

@Suite struct PeerFrameTests {
    private let file = FileID(bytes: Array(repeating: 7, count: 32))!

    private func decode(_ bytes: [UInt8]) throws -> [PeerFrame] {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(PeerFrameDecoder()))
        defer { _ = try? channel.finish() }
        try channel.writeInbound(ByteBuffer(bytes: bytes))
        var frames: [PeerFrame] = []
        while let frame = try channel.readInbound(as: PeerFrame.self) { frames.append(frame) }
        return frames
    }

    private func encoded(_ frame: PeerFrame) -> [UInt8] {
        var buffer = ByteBuffer()
        frame.encode(into: &buffer)
        return Array(buffer.readableBytesView)
    }

    @Test func everyFrameSurvivesARoundTrip() throws {
        let frames: [PeerFrame] = [
            .hello(file: file), .bitfield([0xff, 0x80]), .request(piece: 3, offset: 262_144, length: 262_144),
            .piece(piece: 3, offset: 0, data: ByteBuffer(bytes: [1, 2, 3])), .reject(code: .busy, message: "try later"), .have(piece: 41),
        ]
        #expect(try decode(frames.flatMap(encoded)) == frames)
    }

    @Test func aHaveFrameHoldsExactlyOnePieceNumber() throws {
        #expect(try decode([0, 0, 0, 5, 6, 0, 0, 0, 9]) == [.have(piece: 9)])
        #expect(throws: WireError.self) { try decode([0, 0, 0, 4, 6, 0, 0, 9]) }
        #expect(throws: WireError.self) { try decode([0, 0, 0, 6, 6, 0, 0, 0, 9, 0]) }
    }

    @Test func aRejectIsSplitOnTheSpaceByteNotOnCharacters() throws {
        // U+070F joins the following space into one character; splitting by characters lost the space.
        let payload: [UInt8] = Array("BUSY".utf8) + [UInt8(ascii: " "), 0xdc, 0x8f, UInt8(ascii: " "), UInt8(ascii: "x")]
        let frame = [0, 0, 0, UInt8(payload.count + 1), 5] + payload
        #expect(try decode(frame) == [.reject(code: .busy, message: "\u{070F} x")])
        #expect(try decode(encoded(.reject(code: .busy, message: "\u{070F} x"))) == [.reject(code: .busy, message: "\u{070F} x")])
        #expect(throws: WireError.self) { try decode([0, 0, 0, 5, 5, UInt8(ascii: "@"), 0xdc, 0x8f, UInt8(ascii: " ")]) }
        #expect(throws: WireError.self) { try decode([0, 0, 0, 4, 5, UInt8(ascii: "E"), UInt8(ascii: " "), 0xff]) }
        let long = String(repeating: "é", count: 2000)
        let truncated = try decode(encoded(.reject(code: .busy, message: long)))
        #expect(truncated.count == 1)
    }

    @Test func aRejectWithACodeOutsideTheListIsMalformed() throws {
        let payload = Array("NOT_A_CODE why".utf8)
        #expect(throws: WireError.self) { try decode([0, 0, 0, UInt8(payload.count + 1), 5] + payload) }
    }

    @Test func anOversizeLengthIsRefusedBeforeItsBodyArrives() throws {
        let length = UInt32(PeerFrame.maximumFrameLength + 1)
        let header = withUnsafeBytes(of: length.bigEndian) { Array($0) }
        #expect(throws: WireError.self) { try decode(header + [4]) }
    }

    @Test func requestsOutsideTheBlockLimitAreRefused() throws {
        #expect(throws: WireError.self) { try decode(encoded(.request(piece: 0, offset: 0, length: 0))) }
        #expect(throws: WireError.self) { try decode(encoded(.request(piece: 0, offset: 0, length: PeerFrame.maximumBlockLength + 1))) }
        #expect(throws: WireError.self) { try decode([0, 0, 0, 1, 99]) }
    }
}
