import Foundation
import PKI
import PKITesting
import Peer
import Tracker
import Testing
import Wire

@Suite struct TrackerServerTests {
    @Test func aSharedFileIsListedWithTheHoldersIdentityAndAddress() async throws {
        let fixture = try TrackerFixture()
        let alice = try fixture.client("alice")
        #expect(try await alice.send(fixture.share(fileA, size: 1234, name: "report final.pdf", port: 6001, signedBy: "alice")) == .ok("shared \(fileA) from 127.0.0.1:6001"))
        let answer = try await fixture.client("bob").send(.get(file: fileA))
        guard case .holders(let size, let name, let holders) = answer else {
            Issue.record("expected holders, got \(answer)")
            return
        }
        #expect(size == 1234)
        #expect(name == "report final.pdf")
        #expect(holders.map(\.address) == ["127.0.0.1:6001"])
        #expect(holders.first?.name == "alice")
        let aliceFingerprint = try CertificateProfile.fingerprint(of: SigningIdentity.load(named: "alice", from: fixture.ca.layout).certificate)
        #expect(holders.first?.fingerprint == aliceFingerprint)
    }

    @Test func anUnknownFileIsNotFound() async throws {
        let fixture = try TrackerFixture()
        #expect(try await fixture.client("alice").send(.get(file: fileB)) == .failure(code: .fileNotFound, message: "no peer shares \(fileB)"))
    }

    @Test func theACLDeniesWhatNoRuleAllows() async throws {
        let fixture = try TrackerFixture(acl: """
            # lab members may fetch; only alice may share
            allow get group lab
            allow share,remove peer alice
            """)
        #expect(try await fixture.client("alice").send(fixture.share(fileA, size: 1, port: 6001, signedBy: "alice")) == .ok("shared \(fileA) from 127.0.0.1:6001"))
        guard case .failure(.accessDenied, _) = try await fixture.client("bob").send(fixture.share(fileB, size: 1, name: "b", port: 6002, signedBy: "bob")) else {
            Issue.record("bob shared without a rule allowing it")
            return
        }
        guard case .holders = try await fixture.client("bob").send(.get(file: fileA)) else {
            Issue.record("bob (group lab) could not get")
            return
        }
        guard case .failure(.accessDenied, _) = try await fixture.client("carol").send(.get(file: fileA)) else {
            Issue.record("carol (group ops) got without a rule allowing it")
            return
        }
    }

    @Test func removeSemanticsFollowTheSignerAndAdmins() async throws {
        let fixture = try TrackerFixture(acl: """
            allow share,get,remove any
            allow admin peer carol
            """)
        let alice = try fixture.client("alice")
        let bob = try fixture.client("bob")
        let carol = try fixture.client("carol")
        _ = try await alice.send(fixture.share(fileA, port: 6001, signedBy: "alice"))
        guard case .failure(.accessDenied, _) = try await bob.send(.remove(file: fileA, port: 6002)) else {
            Issue.record("a non-holder, non-signer withdrew the file")
            return
        }
        _ = try await bob.send(fixture.share(fileA, port: 6002, signedBy: "alice"))
        #expect(try await bob.send(.remove(file: fileA, port: 6002)) == .ok("removed your entry for \(fileA)"))
        guard case .holders(_, _, let holders) = try await bob.send(.get(file: fileA)) else {
            Issue.record("the signer's entry vanished with bob's")
            return
        }
        #expect(holders.map(\.name) == ["alice"])
        #expect(try await alice.send(.remove(file: fileA, port: 6001)) == .ok("withdrew \(fileA) from the network"))
        guard case .failure(.withdrawn, _) = try await bob.send(fixture.share(fileA, port: 6002, signedBy: "alice")) else {
            Issue.record("a withdrawn file was shared again without an admin")
            return
        }
        guard case .failure(.accessDenied, _) = try await alice.send(.allow(file: fileA)) else {
            Issue.record("a non-admin allowed a withdrawn file")
            return
        }
        #expect(try await carol.send(.allow(file: fileA)) == .ok("\(fileA) may be shared again"))
        #expect(try await bob.send(fixture.share(fileA, port: 6002, signedBy: "alice")) == .ok("shared \(fileA) from 127.0.0.1:6002"))
    }

    @Test func answeredSharesSurviveARestartAndLeaveRemovesAtOnce() async throws {
        let fixture = try TrackerFixture()
        _ = try await fixture.client("alice").send(fixture.share(fileA, port: 6001, signedBy: "alice"))
        _ = try await fixture.client("bob").send(fixture.share(fileA, port: 6002, signedBy: "alice"))
        try fixture.start(aclPath: nil)
        guard case .holders(_, _, let holders) = try await fixture.client("carol").send(.get(file: fileA)) else {
            Issue.record("shares were lost across a restart")
            return
        }
        #expect(holders.map(\.name).sorted() == ["alice", "bob"])
        #expect(try await fixture.client("bob").send(.leave(port: 6002)) == .ok("left"))
        guard case .holders(_, _, let after) = try await fixture.client("carol").send(.get(file: fileA)) else {
            Issue.record("alice's entry vanished")
            return
        }
        #expect(after.map(\.name) == ["alice"])
    }

    @Test func silentHoldersExpireAndHeartbeatsKeepThem() async throws {
        let fixture = try TrackerFixture(timeToLive: 60)
        let alice = try fixture.client("alice")
        _ = try await alice.send(fixture.share(fileA, port: 6001, signedBy: "alice"))
        #expect(try await fixture.server.registry.expire(now: Date() + 30) == 0)
        #expect(try await alice.send(.heartbeat(port: 6001)) == .ok("refreshed 1 entries"))
        #expect(try await fixture.server.registry.expire(now: Date() + 61) == 1)
        #expect(try await alice.send(.get(file: fileA)) == .failure(code: .noSeeders, message: "no peer holding \(fileA) is online"))
    }

    @Test func badRequestsGetAClearErrorAndTheConnectionGoesOn() async throws {
        let fixture = try TrackerFixture()
        let raw = try RawLineClient(fixture: fixture, name: "alice")
        #expect(try await raw.exchange("SHARE nothex 6001 AAAA").hasPrefix("ERR INVALID_ARGUMENTS"))
        #expect(try await raw.exchange("DELETE everything").hasPrefix("ERR INVALID_ARGUMENTS unknown request"))
        #expect(try await raw.exchange("GET \(fileA)").hasPrefix("ERR FILE_NOT_FOUND"))
    }

    @Test func anOversizeLineClosesOnlyThatConnection() async throws {
        let fixture = try TrackerFixture()
        let raw = try RawLineClient(fixture: fixture, name: "alice")
        await #expect(throws: (any Error).self) { try await raw.exchange(String(repeating: "A", count: TrackerRequest.maximumLineLength + 1)) }
        #expect(try await fixture.client("bob").send(.get(file: fileA)) == .failure(code: .fileNotFound, message: "no peer shares \(fileA)"))
    }

    @Test func aPeerOfAnotherCAIsRefused() async throws {
        let fixture = try TrackerFixture()
        let other = try TestAuthority()
        try other.peer("mallory")
        let mallory = try fixture.client("mallory", authority: other)
        await #expect(throws: TrackerUnreachable.self) { try await mallory.send(.get(file: fileA)) }
    }

    @Test func aRevokedPeersConnectionIsClosedAndItsHoldingsUnlistedOnReload() async throws {
        let fixture = try TrackerFixture()
        let alice = try fixture.client("alice")
        let bob = try fixture.client("bob")
        _ = try await alice.send(fixture.share(fileA, port: 6001, signedBy: "alice"))
        _ = try await bob.send(fixture.share(fileA, port: 6002, signedBy: "alice"))
        guard case .holders(_, _, let before) = try await bob.send(.get(file: fileA)) else {
            Issue.record("both holders should be listed")
            return
        }
        #expect(Set(before.map(\.name)) == ["alice", "bob"])
        try fixture.ca.authority.revoke(name: "alice", reason: .keyCompromise)
        try fixture.server.reload()
        try await Task.sleep(for: .milliseconds(300))
        // The open connection was closed; a new one is refused during its handshake.
        await #expect(throws: TrackerUnreachable.self) { try await alice.send(.get(file: fileA)) }
        await #expect(throws: TrackerUnreachable.self) { try await alice.send(.get(file: fileA)) }
        // Others are served as before, and alice is no longer offered to them.
        guard case .holders(_, _, let after) = try await bob.send(.get(file: fileA)) else {
            Issue.record("others were disturbed by the reload")
            return
        }
        #expect(after.map(\.name) == ["bob"])
    }
}
