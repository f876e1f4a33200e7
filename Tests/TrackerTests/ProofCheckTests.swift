import Foundation
import PKITesting
import TLS
import Testing
@testable import Tracker
import Wire

/// A remembered signed header is only as good as the checks it passed: it still has to name the
/// file shared, and it lapses when the signer's certificate does.
@Suite struct ProofCheckTests {
    @Test func aRememberedHeaderStillHasToNameTheFileShared() throws {
        let fixture = try TrackerFixture()
        let check = ProofCheck(trust: TrustSource(try fixture.ca.trust()))
        let proof = try fixture.signedHeader(fileA, size: 10, signedBy: "alice")
        #expect(try check.check(proof, of: fileA).signer.name == "alice")
        let refusal = #expect(throws: ProofRefusal.self) { try check.check(proof, of: fileB) }
        #expect(refusal?.message.hasPrefix("the signed header names root \(fileA)") == true)
    }

    @Test func aRememberedHeaderLapsesWithItsSignersCertificate() throws {
        let fixture = try TrackerFixture()
        let check = ProofCheck(trust: TrustSource(try fixture.ca.trust()))
        let proof = try fixture.signedHeader(fileA, size: 10, signedBy: "alice")
        let now = Date()
        #expect(try check.check(proof, of: fileA, at: now).size == 10)
        let refusal = #expect(throws: ProofRefusal.self) { try check.check(proof, of: fileA, at: now + 5 * 365 * 86_400) }
        #expect(refusal?.message.hasPrefix("the signed header is refused (signer-refused)") == true)
    }
}
