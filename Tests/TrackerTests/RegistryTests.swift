import FileIO
import Foundation
@testable import PKI
import PKITesting
import Tracker
import Testing
import Wire

@Suite struct RegistryTests {
    private let alice = VerifiedIdentity(name: "alice", role: .peer, groups: [], fingerprint: String(repeating: "1", count: 64), serial: "01")
    private let bob = VerifiedIdentity(name: "bob", role: .peer, groups: [], fingerprint: String(repeating: "2", count: 64), serial: "02")

    @Test func aTornLastLineIsIgnoredAndTheJournalIsCompacted() throws {
        let folder = TemporaryFolder()
        do {
            let registry = try Registry(folder: folder.path, timeToLive: 300)
            _ = try registry.share(file: fileA, size: 5, name: "a b", signer: alice, address: "127.0.0.1:1", identity: alice)
            _ = try registry.share(file: fileB, size: 6, name: "b", signer: alice, address: "127.0.0.1:1", identity: alice)
        }
        let path = folder.file("seeders.txt")
        var text = try String(contentsOfFile: path, encoding: .utf8)
        text += "share \(fileA) 5 127.0.0.1:2 bob \(String(repeating: "2", count: 64)) a"  // no line feed: torn
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        let reopened = try Registry(folder: folder.path, timeToLive: 300)
        guard case .holders(_, let name, let holders) = reopened.holders(of: fileA) else {
            Issue.record("the answered share was lost")
            return
        }
        #expect(name == "a b")
        #expect(holders.map(\.name) == ["alice"])
        #expect(try String(contentsOfFile: path, encoding: .utf8).hasSuffix("\n"))
    }

    @Test func theSignersRightToWithdrawSurvivesItLeavingAndARestart() throws {
        let folder = TemporaryFolder()
        do {
            let registry = try Registry(folder: folder.path, timeToLive: 300)
            _ = try registry.share(file: fileA, size: 5, name: "a", signer: alice, address: "127.0.0.1:1", identity: alice)
            _ = try registry.share(file: fileA, size: 5, name: "a", signer: alice, address: "127.0.0.1:2", identity: bob)
            _ = try registry.leave(address: "127.0.0.1:1", identity: alice)
        }
        let reopened = try Registry(folder: folder.path, timeToLive: 300)
        #expect(try reopened.remove(file: fileA, address: "127.0.0.1:2", identity: bob, isAdmin: false) == .done("removed your entry for \(fileA)"))
        #expect(try reopened.remove(file: fileA, address: "127.0.0.1:1", identity: alice, isAdmin: false) == .done("withdrew \(fileA) from the network"))
        let again = try Registry(folder: folder.path, timeToLive: 300)
        guard case .refused(.withdrawn, _) = try again.share(file: fileA, size: 5, name: "a", signer: alice, address: "127.0.0.1:2", identity: bob) else {
            Issue.record("the withdrawal was lost across a restart")
            return
        }
    }

    @Test func anotherSignersClaimWithAnotherSizeLeavesTheFirstAlone() throws {
        let folder = TemporaryFolder()
        let registry = try Registry(folder: folder.path, timeToLive: 300)
        _ = try registry.share(file: fileA, size: 6, name: "wrong", signer: bob, address: "127.0.0.1:2", identity: bob)
        #expect(try registry.share(file: fileA, size: 5, name: "a", signer: alice, address: "127.0.0.1:1", identity: alice) == .done("shared \(fileA) from 127.0.0.1:1"))
        #expect(try registry.remove(file: fileA, address: "127.0.0.1:2", identity: bob, isAdmin: false) == .done("withdrew \(fileA) from the network"))
        guard case .holders(5, "a", let holders) = registry.holders(of: fileA) else {
            Issue.record("another signer's withdrawal took the first signer's file")
            return
        }
        #expect(holders.map(\.name) == ["alice"])
    }

    @Test func aJournalFromBeforeProofsIsStillRead() throws {
        let folder = TemporaryFolder()
        let path = folder.file("seeders.txt")
        try FileIO.makeFolder(folder.path, mode: 0o755)
        try """
            share \(fileA) 5 127.0.0.1:1 alice \(alice.fingerprint) a b
            share \(fileA) 5 127.0.0.1:2 bob \(bob.fingerprint) a b
            leave 127.0.0.1:1 alice

            """.write(toFile: path, atomically: true, encoding: .utf8)
        let registry = try Registry(folder: folder.path, timeToLive: 300)
        guard case .holders(5, "a b", let holders) = registry.holders(of: fileA) else {
            Issue.record("the old journal was not read")
            return
        }
        #expect(holders.map(\.name) == ["bob"])
        #expect(try registry.remove(file: fileA, address: "127.0.0.1:1", identity: alice, isAdmin: false) == .done("withdrew \(fileA) from the network"))
        #expect(try String(contentsOfFile: path, encoding: .utf8).hasPrefix("claim \(fileA) 5 alice \(alice.fingerprint) a b\n"))
    }
}

@Suite struct AccessControlListTests {
    private func identity(_ name: String, groups: [String] = []) -> VerifiedIdentity {
        VerifiedIdentity(name: name, role: .peer, groups: groups, fingerprint: "", serial: "")
    }

    @Test func rulesAllowByNameGroupOrAnyoneAndDenyTheRest() throws {
        let acl = try AccessControlList(text: """
            # example
            allow share,get peer alice   # alice shares
            allow get group lab
            allow admin peer root
            """, source: "acl")
        #expect(acl.decide(.share, for: identity("alice")).allowed)
        #expect(!acl.decide(.remove, for: identity("alice")).allowed)
        #expect(acl.decide(.get, for: identity("bob", groups: ["lab"])).allowed)
        #expect(!acl.decide(.share, for: identity("bob", groups: ["lab"])).allowed)
        #expect(acl.decide(.remove, for: identity("root")).allowed)
        #expect(!acl.decide(.get, for: identity("eve")).allowed)
        #expect(acl.decide(.get, for: identity("bob", groups: ["lab"])).reason.contains("line 3"))
    }

    @Test func anEmptyFileDeniesEverything() throws {
        let acl = try AccessControlList(text: "# nobody\n", source: "acl")
        #expect(!acl.decide(.get, for: identity("alice")).allowed)
    }

    @Test(arguments: ["deny get any", "allow fetch any", "allow get", "allow get peer", "allow get peer ../x", "allow get anyone", "allow get any extra"])
    func malformedRulesAreRefusedWithTheirLine(rule: String) {
        #expect(throws: ConfigurationError.self) { try AccessControlList(text: "allow get any\n\(rule)\n", source: "acl") }
        let error = try? #require(throws: ConfigurationError.self) { try AccessControlList(text: "allow get any\n\(rule)\n", source: "acl") }
        #expect(error?.line == 2)
    }
}
