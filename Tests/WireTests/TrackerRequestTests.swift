import Testing
import Wire

@Suite struct TrackerRequestTests {
    private let root = String(repeating: "ab", count: 32)

    @Test func aShareCarriesItsSignedHeaderInBase64AndReadsBackTheSame() throws {
        let share = TrackerRequest.share(file: FileID(hex: root)!, port: 6001, proof: Array("mtorrent 2\n".utf8))
        #expect(share.line == "SHARE \(root) 6001 bXRvcnJlbnQgMgo=")
        #expect(try TrackerRequest(line: share.line) == share)
    }

    @Test(arguments: [
        "SHARE \(String(repeating: "ab", count: 32)) 3000000 6001 data.bin",  // the old form, without proof
        "SHARE \(String(repeating: "ab", count: 32)) 6001",
        "SHARE \(String(repeating: "ab", count: 32)) 6001 bXRvcnJlbnQgMgo",  // padding missing
        "SHARE \(String(repeating: "ab", count: 32)) 6001 bXRvcnJlbnQg\nMgo=",
        "SHARE \(String(repeating: "ab", count: 32)) 6001 =",
    ])
    func aShareWithoutACanonicalHeaderIsMalformed(_ line: String) {
        #expect(throws: WireError.self) { try TrackerRequest(line: line) }
    }
}
