import Foundation
import PKI
import PKITesting
import Testing

/// What a peer accepts as a newer revocation list from a tracker, and the expiry warnings.
@Suite struct RevocationUpdateTests {
    @Test func aNewerListOurCASignedIsAdoptedAndRevokes() throws {
        let ca = try TestAuthority()
        let carol = try ca.peer("carol")
        let held = try ca.trust()
        let (_, newer) = try ca.authority.revoke(name: "carol", reason: .keyCompromise)
        let adopted = try held.adopting(newer)
        #expect(adopted.revocationList.number == held.revocationList.number + 1)
        #expect(throws: ValidationError(.revoked, "")) { try adopted.validate(carol.certificate, as: .peer) }
    }

    @Test func theSameOrAnOlderListChangesNothing() throws {
        let ca = try TestAuthority()
        let older = try ca.trust().revocationList
        _ = try ca.authority.renewRevocationList()
        let held = try ca.trust()
        #expect(throws: ValidationError(.revocationListNotNewer, "")) { try held.adopting(older) }
        #expect(throws: ValidationError(.revocationListNotNewer, "")) { try held.adopting(held.revocationList) }
    }

    @Test func aListAnotherCASignedIsRefusedWhateverItsNumber() throws {
        let ours = try TestAuthority(name: "Same Name")
        let theirs = try TestAuthority(name: "Same Name")
        for _ in 0..<3 { _ = try theirs.authority.renewRevocationList() }
        let forged = try theirs.trust().revocationList
        let held = try ours.trust()
        #expect(forged.number > held.revocationList.number)
        #expect(throws: ValidationError(.revocationListInvalid, "")) { try held.adopting(forged) }
    }

    @Test func aListThatIsNotCurrentIsRefused() throws {
        let ca = try TestAuthority()
        let held = try ca.trust()
        let newer = try ca.authority.renewRevocationList(days: 10)
        #expect(throws: ValidationError(.revocationListExpired, "")) { try held.adopting(newer, at: Date() + 11 * 86400) }
        #expect(throws: ValidationError(.revocationListExpired, "")) { try held.adopting(newer, at: newer.thisUpdate - TrustStore.clockSkew - 60) }
        #expect(try held.adopting(newer, at: Date() + 9 * 86400).revocationList.number == newer.number)
    }

    @Test func aCertificateNearItsEndIsWarnedAboutFromFourteenDays() throws {
        let ca = try TestAuthority()
        let alice = try ca.peer("alice", days: 30)
        let list = try ca.authority.renewRevocationList(days: 365)
        let end = alice.certificate.notValidAfter
        #expect(ExpiryNotice.warnings(certificate: alice.certificate, name: "alice", revocationList: list, now: end - 15 * 86400).isEmpty)
        let soon = ExpiryNotice.warnings(certificate: alice.certificate, name: "alice", revocationList: list, now: end - 13.5 * 86400)
        #expect(soon.count == 1 && soon[0].contains("'alice'") && soon[0].contains("13 days left"))
        let past = ExpiryNotice.warnings(certificate: alice.certificate, name: "alice", revocationList: list, now: end + 60)
        #expect(past.count == 1 && past[0].contains("expired"))
    }

    @Test func aRevocationListNearItsEndIsWarnedAboutFromSevenDays() throws {
        let ca = try TestAuthority()
        let alice = try ca.peer("alice", days: 365)
        let list = try ca.authority.renewRevocationList(days: 30)
        let end = list.nextUpdate
        #expect(ExpiryNotice.warnings(certificate: alice.certificate, name: "alice", revocationList: list, now: end - 8 * 86400).isEmpty)
        let soon = ExpiryNotice.warnings(certificate: alice.certificate, name: "alice", revocationList: list, now: end - 6.5 * 86400)
        #expect(soon.count == 1 && soon[0].contains("revocation list") && soon[0].contains("6 days left"))
    }
}
