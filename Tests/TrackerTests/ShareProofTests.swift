import Foundation
import PKI
import PKITesting
import Peer
import Testing
import Tracker
import Wire

/// An insider with a valid peer certificate speaks raw lines to the tracker and tries to take a
/// root it did not sign: register it without proof, with a forged or foreign proof, or withdraw it.
@Suite struct ShareProofTests {
    private func share(_ file: FileID, port: UInt16, proof: [UInt8]) -> String {
        TrackerRequest.share(file: file, port: port, proof: proof).line
    }

    @Test func aShareWithoutProofIsRefusedAndRegistersNothing() async throws {
        let fixture = try TrackerFixture()
        let mallory = try RawLineClient(fixture: fixture, name: "bob")
        #expect(try await mallory.exchange("SHARE \(fileA) 999 6666 a.bin").hasPrefix("ERR INVALID_ARGUMENTS 'SHARE' takes 3 arguments"))
        #expect(try await mallory.exchange("GET \(fileA)").hasPrefix("ERR FILE_NOT_FOUND"))
        #expect(try await mallory.exchange(share(fileA, port: 6666, proof: Array("mtorrent 2\n".utf8))).hasPrefix("ERR PROOF_INVALID"))
    }

    @Test func aSquatWithAnotherSizeNeitherBlocksNorRenamesTheSignersFile() async throws {
        let fixture = try TrackerFixture()
        let mallory = try RawLineClient(fixture: fixture, name: "bob")
        let aliceProof = try fixture.signedHeader(fileA, size: 40_000, name: "report.pdf", signedBy: "alice")
        // Changing the size in alice's header breaks her signature.
        let tampered = Array(String(decoding: aliceProof, as: UTF8.self).replacingOccurrences(of: "size 40000", with: "size 40001").utf8)
        #expect(try await mallory.exchange(share(fileA, port: 6666, proof: tampered)).hasPrefix("ERR PROOF_INVALID"))
        // A header of his own with a wrong size is only his own claim.
        let own = try fixture.signedHeader(fileA, size: 1, name: "squat.bin", signedBy: "bob")
        #expect(try await mallory.exchange(share(fileA, port: 6666, proof: own)).hasPrefix("OK"))
        let alice = try RawLineClient(fixture: fixture, name: "alice")
        #expect(try await alice.exchange(share(fileA, port: 6001, proof: aliceProof)) == "OK shared \(fileA) from 127.0.0.1:6001")
        #expect(try await mallory.exchange("REMOVE \(fileA) 6666") == "OK withdrew \(fileA) from the network")
        #expect(try await fixture.client("carol").send(.get(file: fileA)) == .holders(size: 40_000, name: "report.pdf", [
            HolderRecord(address: "127.0.0.1:6001", name: "alice", fingerprint: try fingerprint("alice", fixture)),
        ]))
    }

    @Test func foreignRevokedAndMismatchedProofsAreRefusedWithTheirCode() async throws {
        let fixture = try TrackerFixture()
        let other = try TestAuthority()
        try other.peer("alice")
        let raw = try RawLineClient(fixture: fixture, name: "bob")
        let foreign = try fixture.signedHeader(fileA, size: 10, signedBy: "alice", authority: other)
        #expect(try await raw.exchange(share(fileA, port: 6002, proof: foreign)).hasPrefix("ERR PROOF_INVALID the signed header is refused (signer-refused)"))
        let forB = try fixture.signedHeader(fileB, size: 10, signedBy: "alice")
        #expect(try await raw.exchange(share(fileA, port: 6002, proof: forB)).hasPrefix("ERR PROOF_INVALID the signed header names root \(fileB)"))
        let byCarol = try fixture.signedHeader(fileA, size: 10, signedBy: "carol")
        try fixture.ca.authority.revoke(name: "carol", reason: .keyCompromise)
        try fixture.server.reload()
        #expect(try await raw.exchange(share(fileA, port: 6002, proof: byCarol)).hasPrefix("ERR PROOF_INVALID the signed header is refused (signer-refused)"))
        #expect(try await raw.exchange("GET \(fileA)").hasPrefix("ERR FILE_NOT_FOUND"))
        let byAlice = try fixture.signedHeader(fileA, size: 10, signedBy: "alice")
        #expect(try await raw.exchange(share(fileA, port: 6002, proof: byAlice)) == "OK shared \(fileA) from 127.0.0.1:6002")
    }

    @Test func aHeaderAcceptedBeforeItsSignerWasRevokedIsRefusedAfterTheReload() async throws {
        let fixture = try TrackerFixture()
        let raw = try RawLineClient(fixture: fixture, name: "bob")
        let byCarol = try fixture.signedHeader(fileA, size: 10, signedBy: "carol")
        #expect(try await raw.exchange(share(fileA, port: 6002, proof: byCarol)) == "OK shared \(fileA) from 127.0.0.1:6002")
        #expect(try await raw.exchange(share(fileA, port: 6002, proof: byCarol)) == "OK shared \(fileA) from 127.0.0.1:6002")
        try fixture.ca.authority.revoke(name: "carol", reason: .keyCompromise)
        try fixture.server.reload()
        #expect(try await raw.exchange(share(fileA, port: 6002, proof: byCarol)).hasPrefix("ERR PROOF_INVALID the signed header is refused (signer-refused)"))
    }

    @Test func onlyTheSignerOrAnAdminWithdrawsAndOnlyAnAdminAllows() async throws {
        let fixture = try TrackerFixture(acl: """
            allow share,get,remove any
            allow admin peer carol
            """)
        let proof = try fixture.signedHeader(fileA, size: 10, signedBy: "alice")
        let alice = try RawLineClient(fixture: fixture, name: "alice")
        let bob = try RawLineClient(fixture: fixture, name: "bob")
        let carol = try RawLineClient(fixture: fixture, name: "carol")
        #expect(try await alice.exchange(share(fileA, port: 6001, proof: proof)).hasPrefix("OK"))
        #expect(try await bob.exchange(share(fileA, port: 6002, proof: proof)).hasPrefix("OK"))
        // bob holds a copy of alice's file: his REMOVE drops only his own entry.
        #expect(try await bob.exchange("REMOVE \(fileA) 6002") == "OK removed your entry for \(fileA)")
        #expect(try await bob.exchange("REMOVE \(fileA) 6002").hasPrefix("ERR ACCESS_DENIED"))
        #expect(try await bob.exchange("ALLOW \(fileA)").hasPrefix("ERR ACCESS_DENIED"))
        #expect(try await carol.exchange("GET \(fileA)").hasPrefix("HOLDERS 1 10 a"))
        #expect(try await alice.exchange("REMOVE \(fileA) 6001") == "OK withdrew \(fileA) from the network")
        #expect(try await bob.exchange(share(fileA, port: 6002, proof: proof)).hasPrefix("ERR WITHDRAWN"))
        #expect(try await carol.exchange("ALLOW \(fileA)") == "OK \(fileA) may be shared again")
        #expect(try await bob.exchange(share(fileA, port: 6002, proof: proof)).hasPrefix("OK"))
        // An admin's withdrawal covers every signer's claim.
        #expect(try await carol.exchange("REMOVE \(fileA) 7000") == "OK withdrew \(fileA) from the network")
        let bobsOwn = try fixture.signedHeader(fileA, size: 10, signedBy: "bob")
        #expect(try await bob.exchange(share(fileA, port: 6002, proof: bobsOwn)).hasPrefix("ERR WITHDRAWN"))
    }

    private func fingerprint(_ name: String, _ fixture: TrackerFixture) throws -> String {
        try CertificateProfile.fingerprint(of: SigningIdentity.load(named: name, from: fixture.ca.layout).certificate)
    }
}
