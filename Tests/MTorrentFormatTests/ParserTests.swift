import MTorrentFormat
import Testing

@Suite struct ParserTests {
    private func code(_ bytes: [UInt8]) -> MTorrentError.Code? {
        do {
            _ = try MTorrentParser.parse(bytes)
            return nil
        } catch {
            return error.code
        }
    }

    @Test func unknownVersion() throws {
        let fixture = try Fixture()
        #expect(code(fixture.editing { $0[0] = "mtorrent 3" }) == .unknownVersion)
        #expect(code(fixture.editing { $0[0] = "mtorrent 02" }) == .unknownVersion)
    }

    @Test func missingFields() throws {
        let fixture = try Fixture()
        #expect(code(fixture.editing { $0.remove(at: 3) }) == .missingField)
        #expect(code(fixture.editing { $0.remove(at: 1); $0.remove(at: 1) }) == .missingField)
        #expect(code(fixture.editing { $0.removeSubrange(6...) ; $0.append("") }) == .missingField)
        let withoutSignature = fixture.editing { lines in lines.removeAll { $0.hasPrefix("signature ") } }
        #expect(code(withoutSignature) == .missingField)
        #expect(code([]) == .missingField)
    }

    @Test func duplicateFields() throws {
        let fixture = try Fixture()
        #expect(code(fixture.editing { $0.insert("name other.pdf", at: 3) }) == .duplicateField)
        #expect(code(fixture.editing { $0.insert($0[1], at: 2) }) == .duplicateField)
    }

    @Test func reorderedFields() throws {
        let fixture = try Fixture()
        #expect(code(fixture.editing { $0.swapAt(3, 4) }) == .misplacedField)
    }

    @Test func unknownFields() throws {
        let fixture = try Fixture()
        #expect(code(fixture.editing { $0.insert("comment hello", at: 3) }) == .unknownField)
    }

    @Test func badValues() throws {
        let fixture = try Fixture()
        let pieceLine = fixture.text.components(separatedBy: "\n").firstIndex { $0.hasPrefix("piece ") }!
        #expect(code(fixture.editing { $0[pieceLine] = $0[pieceLine].uppercased().replacingOccurrences(of: "PIECE", with: "piece") }) == .badValue)
        #expect(code(fixture.editing { $0[pieceLine] = "piece zz" + $0[pieceLine].dropFirst(8) }) == .badValue)
        #expect(code(fixture.editing { $0[4] = "size 040000" }) == .badValue)
        #expect(code(fixture.editing { $0[4] = "size -1" }) == .badValue)
        #expect(code(fixture.editing { $0[5] = "piece-size 1000" }) == .badValue)
        #expect(code(fixture.editing { $0[6] = "hash-algorithm sha1" }) == .badValue)
        #expect(code(fixture.editing { $0[1] = "tracker 127.0.0.1:0" }) == .badValue)
        #expect(code(fixture.editing { $0[1] = "tracker 127.000.0.1:7001" }) == .badValue)
        #expect(code(fixture.editing { $0[4] = "size " }) == .badValue)
    }

    @Test func pieceCountMustMatchTheSize() throws {
        let fixture = try Fixture()
        let pieceLine = fixture.text.components(separatedBy: "\n").firstIndex { $0.hasPrefix("piece ") }!
        #expect(code(fixture.editing { $0.remove(at: pieceLine) }) == .pieceCountMismatch)
        #expect(code(fixture.editing { $0.insert($0[pieceLine], at: pieceLine) }) == .pieceCountMismatch)
        #expect(code(fixture.editing { $0[4] = "size 80000" }) == .pieceCountMismatch)
    }

    @Test func rootMustMatchThePieces() throws {
        let fixture = try Fixture()
        let pieceLine = fixture.text.components(separatedBy: "\n").firstIndex { $0.hasPrefix("piece ") }!
        #expect(code(fixture.editing { $0[pieceLine] = "piece " + String(repeating: "0", count: 64) }) == .rootMismatch)
    }

    @Test(arguments: ["../../etc/passwd", "/etc/passwd", "a/b", "a\\b", "..", ".", "nul\u{0}byte", "tab\tname", String(repeating: "n", count: 256)])
    func pathTricksInTheNameAreRefused(name: String) throws {
        let fixture = try Fixture()
        #expect(code(fixture.editing { $0[3] = "name \(name)" }) == .badName)
    }

    @Test func trailingGarbageIsRefused() throws {
        let fixture = try Fixture()
        #expect(code(fixture.bytes + Array("extra\n".utf8)) == .trailingData)
        #expect(code(fixture.bytes + [0x0a]) == .trailingData)
    }

    @Test func nonCanonicalEncodingsAreRefused() throws {
        let fixture = try Fixture()
        #expect(code(Array(fixture.bytes.dropLast())) == .nonCanonical)
        let crlf = Array(fixture.text.replacingOccurrences(of: "\n", with: "\r\n").utf8)
        #expect(code(crlf) != nil)
    }

    @Test func certificateBlockMustBeOnePEMCertificate() throws {
        let fixture = try Fixture()
        let begin = fixture.text.components(separatedBy: "\n").firstIndex { $0 == "-----BEGIN CERTIFICATE-----" }!
        #expect(code(fixture.editing { $0[begin] = "-----BEGIN PUBLIC KEY-----" }) == .badCertificate)
        #expect(code(fixture.editing { $0[begin + 1] = "!!!!" }) == .badCertificate)
        #expect(code(fixture.editing { $0.insert("AAAA", at: begin + 1) }) == .badCertificate)
    }

    @Test func oversizeAndNonTextInputIsRefused() throws {
        #expect(code([UInt8](repeating: 0x61, count: MTorrent.maximumFileSize + 1)) == .tooLarge)
        #expect(code([0xff, 0xfe, 0x00]) == .notText)
    }
}
