@testable import MTorrentFormat
import PKI
import Pieces
import Testing

/// Version 2 signs a compact header and carries the piece hashes after it; version 1 files, which
/// sign everything, are still read and verified.
@Suite struct VersionTests {
    /// The fixture's file written as version 1 and signed by alice.
    private func versionOne(_ fixture: Fixture) throws -> MTorrent {
        var content = fixture.torrent.content
        content.version = 1
        return MTorrent(content: content, signature: try fixture.alice.sign(content.signedBytes()))
    }

    @Test func newFilesAreVersionTwoAndReadBackWithTheirSignedHeader() throws {
        let fixture = try Fixture()
        #expect(fixture.torrent.version == 2)
        let lines = fixture.text.components(separatedBy: "\n")
        let signatureLine = try #require(lines.firstIndex { $0.hasPrefix("signature ") })
        #expect(lines[signatureLine + 1].hasPrefix("piece "))
        let parsed = try MTorrentParser.parse(fixture.bytes)
        #expect(try parsed.verify(trust: fixture.ca.trust()).name == "alice")
        #expect(parsed.pieceHashes == fixture.torrent.pieceHashes)
        let header = try #require(parsed.signedHeader)
        #expect(header.bytes == Array(fixture.bytes.prefix(header.bytes.count)))
        #expect(String(decoding: header.bytes, as: UTF8.self).hasSuffix(lines[signatureLine] + "\n"))
        #expect(!String(decoding: header.bytes, as: UTF8.self).contains("\npiece "))
        let reread = try SignedHeader.parse(header.bytes)
        #expect(reread == header)
        #expect(reread.root == fixture.torrent.root && reread.layout == fixture.torrent.layout && reread.name == "report.pdf")
        #expect(try reread.verify(trust: fixture.ca.trust()).name == "alice")
        #expect(header.bytes.count < SignedHeader.maximumBytes)
    }

    @Test func versionOneFilesAreStillReadAndVerified() throws {
        let fixture = try Fixture()
        let bytes = try versionOne(fixture).serialized()
        #expect(String(decoding: bytes, as: UTF8.self).hasPrefix("mtorrent 1\n"))
        let parsed = try MTorrentParser.parse(bytes)
        #expect(parsed.version == 1)
        #expect(parsed.signedHeader == nil)
        #expect(try parsed.verify(trust: fixture.ca.trust()).name == "alice")
        #expect(try parsed.serialized() == bytes)
        #expect(throws: MTorrentError(.unknownVersion, "")) { try SignedHeader.parse(Array(bytes.prefix(200))) }
    }

    @Test func aFlippedByteInTheHeaderSignatureOrPieceHashesIsRefused() throws {
        let fixture = try Fixture()
        let trust = try fixture.ca.trust()
        let text = fixture.text
        let offsets = [
            text.utf8.count - text.split(separator: "\n").last!.utf8.count + 10,  // a piece hash
            Array(text.utf8).indices.first { text.utf8.dropFirst($0).starts(with: "signature ".utf8) }! + 20,  // the signature
            Array(text.utf8).indices.first { text.utf8.dropFirst($0).starts(with: "size ".utf8) }! + 6,  // the header
            Array(text.utf8).indices.first { text.utf8.dropFirst($0).starts(with: "MII".utf8) }! + 40,  // the signer
        ]
        for offset in offsets {
            var changed = fixture.bytes
            changed[offset] = changed[offset] == UInt8(ascii: "1") ? UInt8(ascii: "2") : UInt8(ascii: "1")
            #expect((try? MTorrentParser.parse(changed).verify(trust: trust)) == nil, "a change at byte \(offset) was accepted")
        }
    }

    @Test func everySingleByteChangeOfASignedHeaderIsRefused() throws {
        let fixture = try Fixture()
        let trust = try fixture.ca.trust()
        let header = try #require(fixture.torrent.signedHeader).bytes
        var accepted: [Int] = []
        for index in header.indices {
            var changed = header
            changed[index] ^= 0x01
            if (try? SignedHeader.parse(changed).verify(trust: trust)) != nil { accepted.append(index) }
        }
        #expect(accepted.isEmpty, "changes at byte offsets \(accepted) were accepted")
        #expect(throws: MTorrentError(.trailingData, "")) { try SignedHeader.parse(header + Array("piece 00\n".utf8)) }
        #expect(throws: MTorrentError(.tooLarge, "")) { try SignedHeader.parse([UInt8](repeating: 0x61, count: SignedHeader.maximumBytes + 1)) }
    }

    @Test func pieceHashesThatDoNotMatchTheSignedRootAreRefused() throws {
        let fixture = try Fixture()
        let pieceLine = fixture.text.components(separatedBy: "\n").firstIndex { $0.hasPrefix("piece ") }!
        let swapped = fixture.editing { $0[pieceLine] = "piece " + String(repeating: "0", count: 64) }
        #expect(throws: MTorrentError(.rootMismatch, "")) { try MTorrentParser.parse(swapped) }
        let reordered = fixture.editing { $0.swapAt(pieceLine, pieceLine + 2) }
        #expect(throws: MTorrentError(.rootMismatch, "")) { try MTorrentParser.parse(reordered) }
    }
}
