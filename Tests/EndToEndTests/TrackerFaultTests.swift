import Foundation
import PKI
import PKITesting
import Testing

/// Every command of the peer keeps its promise when a tracker does not: one that accepts and then
/// never answers, never finishes the handshake, answers nonsense, is down and comes back, or
/// refuses; and the result line names the cause. Real `tracker` and `peer` binaries on 127.0.0.1; each answer is awaited with a bound,
/// so a peer that hangs fails the test instead of hanging it.
@Suite(.serialized) struct TrackerFaultTests {
    private let ca: TestAuthority
    private var folder: String { ca.folder.path }
    /// Seconds a tracker request may take in these tests (the peers' `tracker-timeout`).
    private let trackerTimeout = 2
    /// How long a test waits for an answer that should come within a few deadlines.
    private let patience: TimeInterval = 30

    init() throws {
        ca = try TestAuthority()
        for tracker in ["tracker1", "tracker2", "stalled"] {
            try ca.identity(.tracker(name: tracker, dnsNames: [], ipAddresses: ["127.0.0.1"], days: 30))
        }
        for peer in ["alice", "bob"] { try ca.peer(peer, groups: ["lab"]) }
        try Data((0..<2_000_000).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ $0 >> 7) }).write(to: URL(fileURLWithPath: ca.folder.file("data.bin")))
        try "tracker-timeout = \(trackerTimeout)\nheartbeat = 5\n".write(toFile: ca.folder.file("peer.conf"), atomically: true, encoding: .utf8)
    }

    private func tracker(_ name: String, listen: String = "127.0.0.1:0", data: String? = nil, acl: String? = nil) throws -> TrackerProcess {
        var arguments = ["--pki", ca.layout.folder, "--name", name, "--data", ca.folder.file(data ?? "\(name)-data")]
        if let acl {
            try acl.write(toFile: ca.folder.file("\(name).acl"), atomically: true, encoding: .utf8)
            arguments += ["--acl", ca.folder.file("\(name).acl")]
        }
        return try TrackerProcess(folder: folder, arguments: arguments, listen: listen)
    }

    private func peer(_ name: String, _ trackers: [String], pki: String? = nil) throws -> PeerProcess {
        try PeerProcess(folder: folder, name: name, trackers: trackers, pki: pki ?? ca.layout.folder, extra: ["--config", ca.folder.file("peer.conf")])
    }

    private func exists(_ name: String) -> Bool {
        FileManager.default.fileExists(atPath: ca.folder.file(name))
    }

    @Test(arguments: MisbehavingTracker.Behaviour.allCases)
    func everyCommandFinishesWhenOneTrackerMisbehaves(_ behaviour: MisbehavingTracker.Behaviour) throws {
        let good = try tracker("tracker1")
        let bad = try MisbehavingTracker(behaviour, name: "stalled", ca: ca)
        defer { bad.stop() }
        let trackers = [good.address.description, bad.address]
        var alice = try peer("alice", trackers)
        let shared = try alice.run("share data.bin data.mtorrent", timeout: patience)
        #expect(shared.hasPrefix("SUCCESS: shared data.bin"), "\(shared)")
        #expect(shared.contains("not at the others: ") && shared.contains(bad.address), "\(shared)")
        #expect(try alice.run("status", timeout: patience).hasPrefix("SUCCESS: serving 1 file(s)"))
        #expect(try alice.run("exit", timeout: patience) == "SUCCESS: leaving the trackers")
        #expect(alice.finish() == 0)
        // Start-up announces the remembered share; it must not wait on the bad tracker either.
        alice = try peer("alice", trackers)
        #expect(!alice.servingAddress.isEmpty, "the peer did not start in time")
        let bob = try peer("bob", trackers)
        let got = try bob.run("get data.mtorrent copy.bin", timeout: patience)
        #expect(got.hasPrefix("SUCCESS: downloaded data.bin"), "\(got)")
        #expect(FileManager.default.contentsEqual(atPath: ca.folder.file("data.bin"), andPath: ca.folder.file("copy.bin")))
        let removed = try alice.run("remove data.mtorrent", timeout: patience)
        #expect(removed.hasPrefix("SUCCESS: no longer serving data.bin"), "\(removed)")
        #expect(try alice.run("exit", timeout: patience) == "SUCCESS: leaving the trackers")
        #expect(alice.finish() == 0)
        #expect(try bob.run("exit", timeout: patience) == "SUCCESS: leaving the trackers")
        #expect(bob.finish() == 0)
    }

    @Test func aShareNoTrackerTookLeavesNothingAndCanBeTriedAgain() throws {
        let (first, second) = (try unusedPort(), try unusedPort())
        let alice = try peer("alice", ["127.0.0.1:\(first)", "127.0.0.1:\(second)"])
        let refused = try alice.run("share data.bin data.mtorrent", timeout: patience)
        #expect(refused.hasPrefix("FAILURE: TRACKERS_UNREACHABLE"), "\(refused)")
        #expect(refused.contains("tracker 127.0.0.1:\(first) refused the connection"), "\(refused)")
        #expect(!exists("data.mtorrent"))
        #expect(try alice.run("status", timeout: patience).hasPrefix("SUCCESS: serving 0 file(s)"))
        let tracker1 = try tracker("tracker1", listen: "127.0.0.1:\(first)")
        defer { tracker1.stop() }
        let again = try alice.run("share data.bin data.mtorrent", timeout: patience)
        #expect(again.hasPrefix("SUCCESS: shared data.bin"), "\(again)")
        #expect(exists("data.mtorrent"))
    }

    @Test func aShareEveryTrackerRefusedIsNotServed() throws {
        let acl = "allow get group lab\n"
        let (tracker1, tracker2) = (try tracker("tracker1", acl: acl), try tracker("tracker2", acl: acl))
        let trackers = [tracker1.address.description, tracker2.address.description]
        let alice = try peer("alice", trackers)
        let refused = try alice.run("share data.bin data.mtorrent", timeout: patience)
        #expect(refused.hasPrefix("FAILURE: ACCESS_DENIED"), "\(refused)")
        #expect(!exists("data.mtorrent"))
        #expect(try alice.run("status", timeout: patience).hasPrefix("SUCCESS: serving 0 file(s)"))
    }

    @Test func aTrackerThatComesBackLearnsTheSharesItMissed() throws {
        let tracker1 = try tracker("tracker1")
        let port = try unusedPort()
        let trackers = [tracker1.address.description, "127.0.0.1:\(port)"]
        let alice = try peer("alice", trackers)
        #expect(try alice.run("share data.bin data.mtorrent", timeout: patience).hasPrefix("SUCCESS: shared"))
        let tracker2 = try tracker("tracker2", listen: "127.0.0.1:\(port)")
        defer { tracker2.stop() }
        tracker1.stop()
        // Only tracker2 is left: bob finds alice there once alice has announced to it again.
        let bob = try peer("bob", trackers)
        var answer = ""
        for _ in 0..<20 where !answer.hasPrefix("SUCCESS") {
            answer = try bob.run("get data.mtorrent copy.bin", timeout: patience)
            if !answer.hasPrefix("SUCCESS") { Thread.sleep(forTimeInterval: 1) }
        }
        #expect(answer.hasPrefix("SUCCESS: downloaded data.bin"), "\(answer)")
    }

    @Test func removeTakesEffectHereWhateverTheTrackersSay() throws {
        let port = try unusedPort()
        var tracker1 = try tracker("tracker1", listen: "127.0.0.1:\(port)")
        let alice = try peer("alice", ["127.0.0.1:\(port)", "127.0.0.1:\(try unusedPort())"])
        #expect(try alice.run("share data.bin data.mtorrent", timeout: patience).hasPrefix("SUCCESS: shared"))
        // The tracker comes back with an empty registry: it no longer knows the file.
        tracker1.stop()
        tracker1 = try tracker("tracker1", listen: "127.0.0.1:\(port)", data: "empty-data")
        defer { tracker1.stop() }
        let removed = try alice.run("remove data.mtorrent", timeout: patience)
        #expect(removed.hasPrefix("SUCCESS: no longer serving data.bin"), "\(removed)")
        #expect(removed.contains("answered FILE_NOT_FOUND"), "\(removed)")
        #expect(try alice.run("status", timeout: patience).hasPrefix("SUCCESS: serving 0 file(s)"))
        #expect(try alice.run("remove data.mtorrent", timeout: patience).hasPrefix("FAILURE: FILE_NOT_FOUND"))
    }

    @Test func theResultLineNamesTheCause() throws {
        let tracker1 = try tracker("tracker1")
        let tracker2 = try tracker("tracker2")
        let trackers = [tracker1.address.description, tracker2.address.description]
        let alice = try peer("alice", trackers)
        #expect(try alice.run("share data.bin data.mtorrent", timeout: patience).hasPrefix("SUCCESS: shared"))

        // A peer's port given as a tracker: that certificate has the wrong role.
        let bob = try peer("bob", [alice.servingAddress, alice.servingAddress])
        let wrongRole = try bob.run("get data.mtorrent b.bin", timeout: patience)
        #expect(wrongRole.hasPrefix("FAILURE: TRACKER_NOT_TRUSTED"), "\(wrongRole)")
        #expect(wrongRole.contains("peer certificate where a tracker is required"), "\(wrongRole)")

        // A tracker dialled by a name its certificate lacks.
        let byName = "localhost:\(tracker1.address.port)"
        let mismatch = try peer("bob", [byName, byName]).run("get data.mtorrent b.bin", timeout: patience)
        #expect(mismatch.hasPrefix("FAILURE: TRACKER_NOT_TRUSTED"), "\(mismatch)")
        #expect(mismatch.contains("does not name localhost"), "\(mismatch)")

        // The serving address is taken: the peer says so and names it.
        let taken = try Command.product(
            "peer", [alice.servingAddress] + trackers + ["--pki", ca.layout.folder, "--name", "bob", "--state", ca.folder.file("state-taken")], in: folder
        )
        #expect(taken.status == 1)
        #expect(taken.errors.contains("ADDRESS_IN_USE \(alice.servingAddress) is already in use"), "\(taken.errors)")
    }
}
