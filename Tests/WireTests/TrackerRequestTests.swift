import Foundation
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

@Suite struct RevocationListExchangeTests {
    @Test func aRequestNamesTheListTheCallerHoldsAndReadsBack() throws {
        #expect(TrackerRequest.revocationList(newerThan: 7).line == "CRL 7")
        #expect(try TrackerRequest(line: "CRL 7") == .revocationList(newerThan: 7))
        #expect(try TrackerRequest(line: "CRL 0") == .revocationList(newerThan: 0))
    }

    @Test(arguments: ["CRL", "CRL -1", "CRL +5", "CRL 5 6", "CRL x", "CRL 1234567890123456789", "CRL "])
    func aMalformedRequestIsRefused(_ line: String) {
        #expect(throws: WireError.self) { try TrackerRequest(line: line) }
    }

    @Test func anAnswerCarriesTheListInBase64() throws {
        let der: [UInt8] = [0x30, 0x03, 0x02, 0x01, 0x05]
        let lines = TrackerResponse.revocationList(der).lines
        #expect(lines == ["CRL MAMCAQU="])
        var reader = TrackerResponseReader()
        #expect(try reader.consume(lines[0]) == .revocationList(der))
    }

    @Test(arguments: ["CRL ", "CRL !!!!", "CRL MAMCAQU"])
    func aMalformedAnswerIsRefused(_ line: String) {
        var reader = TrackerResponseReader()
        #expect(throws: WireError.self) { try reader.consume(line) }
    }

    @Test func anAnswerLargerThanTheLimitIsRefused() {
        let encoded = Data(repeating: 0x30, count: TrackerResponse.maximumRevocationListBytes + 3).base64EncodedString()
        var reader = TrackerResponseReader()
        #expect(throws: WireError.self) { try reader.consume("CRL " + encoded) }
    }
}
