import FileIO
import Foundation
import PKI
import PKITesting
import Testing
import X509

@Suite struct TrustStoreTests {
    @Test func aCertificateFromAnotherCAIsRefused() throws {
        let ours = try TestAuthority(name: "Our CA")
        let theirs = try TestAuthority(name: "Our CA")
        let mallory = try theirs.peer("mallory")
        #expect(throws: ValidationError(.unknownAuthority, "")) { try ours.trust().validate(mallory.certificate, as: .peer) }
    }

    @Test func aRevokedCertificateIsRefusedOnceTheNewCRLIsLoaded() throws {
        let ca = try TestAuthority()
        let alice = try ca.peer("alice")
        let before = try ca.trust()
        try ca.authority.revoke(name: "alice", reason: .keyCompromise)
        #expect(try before.validate(alice.certificate, as: .peer).name == "alice")
        #expect(throws: ValidationError(.revoked, "")) { try ca.trust().validate(alice.certificate, as: .peer) }
    }

    @Test func aNewCRLRevokesTheIdentityOfALiveConnection() throws {
        let ca = try TestAuthority()
        let alice = try ca.peer("alice")
        let bob = try ca.peer("bob")
        let before = try ca.trust()
        let aliceIdentity = try before.validate(alice.certificate, as: .peer)
        let bobIdentity = try before.validate(bob.certificate, as: .peer)
        try ca.authority.revoke(name: "alice", reason: .keyCompromise)
        let after = try ca.trust()
        #expect(!before.revokes(aliceIdentity))
        #expect(after.revokes(aliceIdentity))
        #expect(!after.revokes(bobIdentity))
    }

    @Test func expiredAndNotYetValidCertificatesAreRefused() throws {
        let ca = try TestAuthority(now: Date() - 400 * 86400)
        let now = Date()
        let old = try ca.peer("old", days: 30, now: now - 60 * 86400)
        let trust = try ca.trust()
        #expect(throws: ValidationError(.expired, "")) { try trust.validate(old.certificate, as: .peer, at: now) }
        let fresh = try ca.peer("fresh", days: 30)
        #expect(throws: ValidationError(.notYetValid, "")) { try trust.validate(fresh.certificate, as: .peer, at: now - 7200) }
    }

    @Test func theWrongRoleIsRefusedBothWays() throws {
        let ca = try TestAuthority()
        let peer = try ca.peer("alice")
        let tracker = try ca.identity(.tracker(name: "t1", dnsNames: [], ipAddresses: [], days: 30))
        let trust = try ca.trust()
        #expect(throws: ValidationError(.wrongRole, "")) { try trust.validate(peer.certificate, as: .tracker) }
        #expect(throws: ValidationError(.wrongRole, "")) { try trust.validate(tracker.certificate, as: .peer) }
    }

    @Test func theCACertificateItselfIsNotALeaf() throws {
        let ca = try TestAuthority()
        let trust = try ca.trust()
        #expect(throws: ValidationError(.badProfile, "")) { try trust.validate(trust.authority, as: .peer) }
    }

    @Test func anExpiredCRLRefusesEveryone() throws {
        let ca = try TestAuthority()
        let alice = try ca.peer("alice", days: 300)
        let trust = try ca.trust()
        #expect(throws: ValidationError(.revocationListExpired, "")) {
            try trust.validate(alice.certificate, as: .peer, at: Date() + 40 * 86400)
        }
        try ca.authority.renewRevocationList(days: 60)
        #expect(try ca.trust().validate(alice.certificate, as: .peer, at: Date() + 40 * 86400).name == "alice")
    }

    @Test func aCRLSignedByAnotherCAIsRefused() throws {
        let ours = try TestAuthority(name: "Same Name")
        let theirs = try TestAuthority(name: "Same Name")
        let foreignList = try theirs.trust().revocationList
        #expect(throws: ValidationError(.revocationListInvalid, "")) {
            try TrustStore(authority: ours.trust().authority, revocationList: foreignList)
        }
    }

    @Test func aCRLWithAFlippedByteIsRefused() throws {
        let ca = try TestAuthority()
        try ca.peer("alice")
        try ca.authority.revoke(name: "alice")
        let trust = try ca.trust()
        let der = trust.revocationList.derEncoded
        var refused = 0
        var parsed = 0
        for index in der.indices {
            var changed = der
            changed[index] ^= 0x01
            guard let list = try? RevocationList(derEncoded: changed) else {
                refused += 1
                continue
            }
            parsed += 1
            if !list.isSigned(by: trust.authority) { refused += 1 }
        }
        #expect(refused == der.count)
        #expect(parsed > 0)
    }

    @Test func revocationListRoundTripsItsEntries() throws {
        let ca = try TestAuthority()
        let alice = try ca.peer("alice")
        try ca.peer("bob")
        try ca.authority.revoke(name: "alice", reason: .keyCompromise)
        try ca.authority.revoke(name: "bob", reason: .cessationOfOperation)
        let list = try RevocationList(pemEncoded: FileIO.readText(ca.layout.revocationList, limit: 1 << 20))
        #expect(list.number == 3)
        #expect(list.entries.map(\.reason) == [.keyCompromise, .cessationOfOperation])
        #expect(list.entry(for: alice.certificate.serialNumber)?.reason == .keyCompromise)
    }

    @Test func aKeyReadableByOthersIsRefused() throws {
        let ca = try TestAuthority()
        try ca.peer("alice")
        chmod(ca.layout.privateKey(named: "alice"), 0o644)
        #expect(throws: PKIError(.badFile, "")) { try SigningIdentity.load(named: "alice", from: ca.layout) }
    }

    @Test func aKeyThatIsNotTheCertificatesIsRefused() throws {
        let ca = try TestAuthority()
        let alice = try ca.peer("alice")
        let bob = try ca.peer("bob")
        #expect(throws: PKIError(.badFile, "")) { try SigningIdentity(certificate: alice.certificate, privateKey: bob.privateKey) }
    }
}
