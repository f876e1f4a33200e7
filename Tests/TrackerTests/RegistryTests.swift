import FileIO
import Foundation
@testable import PKI
import PKITesting
@testable import Tracker
import Testing
import Wire

@Suite struct RegistryTests {
    private let alice = VerifiedIdentity(name: "alice", role: .peer, groups: [], fingerprint: String(repeating: "1", count: 64), serial: "01")
    private let bob = VerifiedIdentity(name: "bob", role: .peer, groups: [], fingerprint: String(repeating: "2", count: 64), serial: "02")

    @Test func aTornLastLineIsIgnoredAndTheJournalIsCompacted() async throws {
        let folder = TemporaryFolder()
        do {
            let registry = try Registry(folder: folder.path, timeToLive: 300)
            _ = try await registry.share(file: fileA, size: 5, name: "a b", signer: alice, address: "127.0.0.1:1", identity: alice)
            _ = try await registry.share(file: fileB, size: 6, name: "b", signer: alice, address: "127.0.0.1:1", identity: alice)
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

    @Test func aChangeAfterTheRegistryClosedIsRefusedAndLeavesNothing() async throws {
        let folder = TemporaryFolder()
        let registry = try Registry(folder: folder.path, timeToLive: 300)
        _ = try await registry.share(file: fileA, size: 5, name: "a", signer: alice, address: "127.0.0.1:1", identity: alice)
        #expect(registry.close(within: 10))
        await #expect(throws: RegistryClosed.self) {
            _ = try await registry.share(file: fileB, size: 6, name: "b", signer: bob, address: "127.0.0.1:2", identity: bob)
        }
        guard case .failure(.fileNotFound, _) = registry.holders(of: fileB) else {
            Issue.record("a share refused after the close is still listed")
            return
        }
        let reopened = try Registry(folder: folder.path, timeToLive: 300)
        guard case .holders(5, "a", _) = reopened.holders(of: fileA), case .failure(.fileNotFound, _) = reopened.holders(of: fileB) else {
            Issue.record("the journal after the close holds the wrong files")
            return
        }
    }

    @Test func theSignersRightToWithdrawSurvivesItLeavingAndARestart() async throws {
        let folder = TemporaryFolder()
        do {
            let registry = try Registry(folder: folder.path, timeToLive: 300)
            _ = try await registry.share(file: fileA, size: 5, name: "a", signer: alice, address: "127.0.0.1:1", identity: alice)
            _ = try await registry.share(file: fileA, size: 5, name: "a", signer: alice, address: "127.0.0.1:2", identity: bob)
            _ = try await registry.leave(address: "127.0.0.1:1", identity: alice)
        }
        let reopened = try Registry(folder: folder.path, timeToLive: 300)
        #expect(try await reopened.remove(file: fileA, address: "127.0.0.1:2", identity: bob, isAdmin: false) == .done("removed your entry for \(fileA)"))
        #expect(try await reopened.remove(file: fileA, address: "127.0.0.1:1", identity: alice, isAdmin: false) == .done("withdrew \(fileA) from the network"))
        let again = try Registry(folder: folder.path, timeToLive: 300)
        guard case .refused(.withdrawn, _) = try await again.share(file: fileA, size: 5, name: "a", signer: alice, address: "127.0.0.1:2", identity: bob) else {
            Issue.record("the withdrawal was lost across a restart")
            return
        }
    }

    @Test func oneCertificateIsOneHolderAtTheAddressItLastAnnounced() async throws {
        let folder = TemporaryFolder()
        do {
            let registry = try Registry(folder: folder.path, timeToLive: 300)
            for port in 1...300 {
                _ = try await registry.share(file: fileA, size: 5, name: "a", signer: alice, address: "127.0.0.1:\(port)", identity: alice)
            }
            guard case .holders(_, _, let holders) = registry.holders(of: fileA) else {
                Issue.record("no holders")
                return
            }
            #expect(holders.map(\.address) == ["127.0.0.1:300"])
            #expect(registry.counts.holders == 1)
        }
        let reopened = try Registry(folder: folder.path, timeToLive: 300)
        guard case .holders(_, _, let holders) = reopened.holders(of: fileA) else {
            Issue.record("no holders after a restart")
            return
        }
        #expect(holders.map(\.address) == ["127.0.0.1:300"])
    }

    @Test func aCertificateFloodingPortsNeverPushesAnotherHolderOut() async throws {
        let folder = TemporaryFolder()
        let registry = try Registry(folder: folder.path, timeToLive: 300)
        _ = try await registry.share(file: fileA, size: 5, name: "a", signer: alice, address: "127.0.0.9:1", identity: bob)
        for port in 1...300 {
            _ = try await registry.share(file: fileA, size: 5, name: "a", signer: alice, address: "127.0.0.1:\(port)", identity: alice)
        }
        for _ in 0..<20 {
            guard case .holders(_, _, let holders) = registry.holders(of: fileA) else {
                Issue.record("no holders")
                return
            }
            #expect(holders.contains { $0.name == "bob" })
        }
    }

    @Test func manyHoldersAreAnsweredAsARandomSampleUpToTheCap() async throws {
        let folder = TemporaryFolder()
        let registry = try Registry(folder: folder.path, timeToLive: 300)
        let count = TrackerResponse.maximumHolders + 50
        for index in 0..<count {
            let peer = VerifiedIdentity(name: "p\(index)", role: .peer, groups: [], fingerprint: String(format: "%064x", index), serial: "\(index)")
            _ = try await registry.share(file: fileA, size: 5, name: "a", signer: alice, address: "127.0.0.1:\(index + 1)", identity: peer)
        }
        var seen = Set<String>()
        for _ in 0..<30 {
            guard case .holders(_, _, let holders) = registry.holders(of: fileA) else {
                Issue.record("no holders")
                return
            }
            #expect(holders.count == TrackerResponse.maximumHolders)
            seen.formUnion(holders.map(\.name))
        }
        #expect(seen.count > TrackerResponse.maximumHolders)
    }

    @Test func journalLinesOfTheEarlierFormatAreStillRead() async throws {
        let folder = TemporaryFolder()
        let path = folder.file("seeders.txt")
        try FileIO.makeFolder(folder.path, mode: 0o755)
        try """
            share \(fileA) 5 127.0.0.1:1 alice \(alice.fingerprint) a
            share \(fileA) 5 127.0.0.1:2 bob \(bob.fingerprint) a
            share \(fileB) 6 127.0.0.1:1 alice \(alice.fingerprint) b
            share \(fileB) 6 127.0.0.1:2 bob \(bob.fingerprint) b
            remove \(fileA) 127.0.0.1:2 bob
            leave 127.0.0.1:1 alice

            """.write(toFile: path, atomically: true, encoding: .utf8)
        let registry = try Registry(folder: folder.path, timeToLive: 300)
        #expect(registry.holders(of: fileA) == .failure(code: .noSeeders, message: "no peer holding \(fileA) is online"))
        guard case .holders(_, _, let holders) = registry.holders(of: fileB) else {
            Issue.record("bob's entry of b was lost")
            return
        }
        #expect(holders.map(\.name) == ["bob"])
        #expect(try await registry.remove(file: fileA, address: "127.0.0.1:1", identity: alice, isAdmin: false) == .done("withdrew \(fileA) from the network"))
    }

    @Test func oneCertificateHoldsAtMostItsQuotaOfFiles() async throws {
        let folder = TemporaryFolder()
        let registry = try Registry(folder: folder.path, timeToLive: 300, maximumFilesPerPeer: 2)
        #expect(try await registry.share(file: fileA, size: 5, name: "a", signer: alice, address: "127.0.0.1:1", identity: alice) == .done("shared \(fileA) from 127.0.0.1:1"))
        #expect(try await registry.share(file: fileB, size: 5, name: "b", signer: alice, address: "127.0.0.1:1", identity: alice) == .done("shared \(fileB) from 127.0.0.1:1"))
        let fileC = FileID(hex: String(repeating: "c3", count: 32))!
        guard case .refused(.quota, _) = try await registry.share(file: fileC, size: 5, name: "c", signer: alice, address: "127.0.0.1:1", identity: alice) else {
            Issue.record("a share over the quota was accepted")
            return
        }
        #expect(try await registry.share(file: fileA, size: 5, name: "a", signer: alice, address: "127.0.0.1:2", identity: alice) == .done("shared \(fileA) from 127.0.0.1:2"))
        #expect(try await registry.share(file: fileC, size: 5, name: "c", signer: bob, address: "127.0.0.1:3", identity: bob) == .done("shared \(fileC) from 127.0.0.1:3"))
        _ = try await registry.leave(address: "127.0.0.1:2", identity: alice)
        #expect(try await registry.share(file: fileC, size: 5, name: "c", signer: alice, address: "127.0.0.1:1", identity: alice) == .done("shared \(fileC) from 127.0.0.1:1"))
    }

    @Test func aFileNobodyHoldsIsForgottenAfterTheTimeToLiveButAWithdrawalStays() async throws {
        let folder = TemporaryFolder()
        let start = Date()
        let registry = try Registry(folder: folder.path, timeToLive: 60, now: start)
        _ = try await registry.share(file: fileA, size: 5, name: "a", signer: alice, address: "127.0.0.1:1", identity: alice, now: start)
        _ = try await registry.share(file: fileB, size: 5, name: "b", signer: alice, address: "127.0.0.1:1", identity: alice, now: start)
        _ = try await registry.leave(address: "127.0.0.1:1", identity: alice, now: start)
        _ = try await registry.share(file: fileB, size: 5, name: "b", signer: alice, address: "127.0.0.1:1", identity: alice, now: start)
        _ = try await registry.remove(file: fileB, address: "127.0.0.1:1", identity: alice, isAdmin: false, now: start)
        registry.expire(now: start + 30)
        #expect(registry.counts.files == 2)
        registry.expire(now: start + 61)
        #expect(registry.counts.files == 1)
        #expect(registry.holders(of: fileA, now: start + 61) == .failure(code: .fileNotFound, message: "no peer shares \(fileA)"))
        #expect(try await registry.share(file: fileA, size: 7, name: "other", signer: bob, address: "127.0.0.1:2", identity: bob, now: start + 61) == .done("shared \(fileA) from 127.0.0.1:2"))
        guard case .refused(.withdrawn, _) = try await registry.share(file: fileB, size: 5, name: "b", signer: alice, address: "127.0.0.1:2", identity: bob, now: start + 61) else {
            Issue.record("a withdrawn file was forgotten")
            return
        }
    }

    @Test func aTornLineBeforeTheEndIsRefusedWithItsNumber() async throws {
        let folder = TemporaryFolder()
        try FileIO.makeFolder(folder.path, mode: 0o755)
        let torn = "share \(fileB) 6 127.0.0.1:2 bob \(bob.fingerprint) b"
        try """
            share \(fileA) 5 127.0.0.1:1 alice \(alice.fingerprint) a
            \(torn.prefix(40))share \(fileB) 6 127.0.0.1:1 alice \(alice.fingerprint) b
            remove \(fileA) 127.0.0.1:1 alice \(alice.fingerprint)

            """.write(toFile: folder.file("seeders.txt"), atomically: true, encoding: .utf8)
        let error = #expect(throws: JournalError.self) { try Registry(folder: folder.path, timeToLive: 300) }
        #expect(error?.line == 2)
        #expect(error?.description.contains("line 2") == true)
    }

    @Test func aJournalOfManyBatchesIsReplayedWholeAndADamagedLineDeepInItIsNamed() async throws {
        let folder = TemporaryFolder()
        try FileIO.makeFolder(folder.path, mode: 0o755)
        // 12,000 files, each a claim and a hold: 24,000 lines, several of the reader's batches.
        var lines: [String] = []
        for index in 0..<12_000 {
            let root = String(repeating: "0", count: 56) + String(format: "%08x", index)
            lines.append("claim \(root) 7 alice \(alice.fingerprint) f\(index)")
            lines.append("hold \(root) alice 127.0.0.1:1 alice \(alice.fingerprint)")
        }
        let path = folder.file("seeders.txt")
        try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        do {
            let registry = try Registry(folder: folder.path, timeToLive: 300)
            #expect(registry.counts.files == 12_000 && registry.counts.holders == 12_000)
            let last = FileID(hex: String(repeating: "0", count: 56) + String(format: "%08x", 11_999))!
            guard case .holders(7, "f11999", let holders) = registry.holders(of: last) else {
                Issue.record("the journal's last file was not replayed")
                return
            }
            #expect(holders.map(\.name) == ["alice"])
        }
        lines[20_000] = String(lines[20_000].prefix(30))
        try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        let error = #expect(throws: JournalError.self) { try Registry(folder: folder.path, timeToLive: 300) }
        #expect(error?.line == 20_001)
    }

    @Test func aFailedAppendIsCutBackAndNeverComesBack() async throws {
        let folder = TemporaryFolder()
        let failing = FailingWrites()
        do {
            let registry = try Registry(folder: folder.path, timeToLive: 300, journalWrite: failing.write)
            _ = try await registry.share(file: fileA, size: 5, name: "a", signer: alice, address: "127.0.0.1:1", identity: alice)
            failing.failNext()
            await #expect(throws: FileIOError.self) { try await registry.share(file: fileB, size: 6, name: "b", signer: alice, address: "127.0.0.1:1", identity: alice) }
            #expect(registry.holders(of: fileB) == .failure(code: .fileNotFound, message: "no peer shares \(fileB)"))
            let fileC = FileID(hex: String(repeating: "c3", count: 32))!
            _ = try await registry.share(file: fileC, size: 7, name: "c", signer: alice, address: "127.0.0.1:1", identity: alice)
        }
        let reopened = try Registry(folder: folder.path, timeToLive: 300)
        #expect(reopened.counts.files == 2)
        #expect(reopened.holders(of: fileB) == .failure(code: .fileNotFound, message: "no peer shares \(fileB)"))
    }

    @Test func theJournalIsCompactedWhileRunningAndKeepsTheState() async throws {
        let folder = TemporaryFolder()
        let fileC = FileID(hex: String(repeating: "c3", count: 32))!
        do {
            let registry = try Registry(folder: folder.path, timeToLive: 300, compactionThreshold: 4096)
            _ = try await registry.share(file: fileA, size: 5, name: "a", signer: alice, address: "127.0.0.1:1", identity: alice)
            _ = try await registry.share(file: fileA, size: 5, name: "a", signer: alice, address: "127.0.0.1:2", identity: bob)
            _ = try await registry.share(file: fileB, size: 6, name: "b", signer: alice, address: "127.0.0.1:2", identity: bob)
            for _ in 0..<100 {
                _ = try await registry.share(file: fileC, size: 7, name: "c", signer: alice, address: "127.0.0.1:3", identity: bob)
                _ = try await registry.leave(address: "127.0.0.1:3", identity: bob)
            }
            let text = try String(contentsOfFile: folder.file("seeders.txt"), encoding: .utf8)
            #expect(text.utf8.count < 4096 * 2)
            #expect(registry.counts.holders == 3)
        }
        let reopened = try Registry(folder: folder.path, timeToLive: 300)
        guard case .holders(_, _, let holders) = reopened.holders(of: fileA), case .holders(_, _, let holdersOfB) = reopened.holders(of: fileB) else {
            Issue.record("the compaction lost entries")
            return
        }
        #expect(holders.map(\.name).sorted() == ["alice", "bob"])
        #expect(holdersOfB.map(\.address) == ["127.0.0.1:2"])
        #expect(reopened.holders(of: fileC) == .failure(code: .noSeeders, message: "no peer holding \(fileC) is online"))
    }

    @Test(.timeLimit(.minutes(1))) func changesAreAnsweredAfterTheirSyncWhichNeitherGetsNorOtherChangesWaitFor() async throws {
        let folder = TemporaryFolder()
        let writes = BlockingWrites()
        let registry = try Registry(folder: folder.path, timeToLive: 300, journalWrite: writes.write)
        let first = Task { try await registry.share(file: fileA, size: 5, name: "a", signer: alice, address: "127.0.0.1:1", identity: alice) }
        await writes.entered()
        // The first append is stuck on the disk: a GET is answered, and later changes queue up.
        guard case .holders = registry.holders(of: fileA) else {
            Issue.record("a GET did not see the change being written")
            return
        }
        let later = (0..<10).map { index in
            Task {
                let peer = VerifiedIdentity(name: "p\(index)", role: .peer, groups: [], fingerprint: String(format: "%064x", index), serial: "\(index)")
                return try await registry.share(file: fileB, size: 6, name: "b", signer: alice, address: "127.0.0.1:2", identity: peer)
            }
        }
        while registry.counts.holders < 11 { await Task.yield() }
        #expect(writes.calls == 1)
        writes.release()
        #expect(try await first.value == .done("shared \(fileA) from 127.0.0.1:1"))
        for task in later { #expect(try await task.value == .done("shared \(fileB) from 127.0.0.1:2")) }
        // The ten changes queued during the first sync went out in one append.
        #expect(writes.calls == 2)
    }

    @Test func aJournalThatOutgrewItsStateIsCompactedAtStartTornLineAndAll() async throws {
        let folder = TemporaryFolder()
        try FileIO.makeFolder(folder.path, mode: 0o755)
        let churn = (0..<50).map { _ in "share \(fileB) 6 127.0.0.1:2 bob \(bob.fingerprint) b\nleave 127.0.0.1:2 bob \(bob.fingerprint)\n" }.joined()
        let text = "share \(fileA) 5 127.0.0.1:1 alice \(alice.fingerprint) a\n" + churn + "share \(fileB) 6 127.0.0.1:2 bob \(bob.fingerprint) b\nshare \(fileA) 5 127.0.0"
        try text.write(toFile: folder.file("seeders.txt"), atomically: true, encoding: .utf8)
        let registry = try Registry(folder: folder.path, timeToLive: 300, compactionThreshold: 1024)
        #expect(registry.counts.files == 2)
        #expect(registry.counts.holders == 2)
        let compacted = try String(contentsOfFile: folder.file("seeders.txt"), encoding: .utf8)
        #expect(compacted.split(separator: "\n").count == 4, "a claim and a holder for each file")
        #expect(compacted.hasSuffix("\n"))
    }

    @Test func anotherSignersClaimWithAnotherSizeLeavesTheFirstAlone() async throws {
        let folder = TemporaryFolder()
        let registry = try Registry(folder: folder.path, timeToLive: 300)
        _ = try await registry.share(file: fileA, size: 6, name: "wrong", signer: bob, address: "127.0.0.1:2", identity: bob)
        #expect(try await registry.share(file: fileA, size: 5, name: "a", signer: alice, address: "127.0.0.1:1", identity: alice) == .done("shared \(fileA) from 127.0.0.1:1"))
        #expect(try await registry.remove(file: fileA, address: "127.0.0.1:2", identity: bob, isAdmin: false) == .done("withdrew \(fileA) from the network"))
        guard case .holders(5, "a", let holders) = registry.holders(of: fileA) else {
            Issue.record("another signer's withdrawal took the first signer's file")
            return
        }
        #expect(holders.map(\.name) == ["alice"])
    }

    @Test func aJournalFromBeforeProofsIsStillRead() async throws {
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
        #expect(try await registry.remove(file: fileA, address: "127.0.0.1:1", identity: alice, isAdmin: false) == .done("withdrew \(fileA) from the network"))
        #expect(try String(contentsOfFile: path, encoding: .utf8).hasPrefix("claim \(fileA) 5 alice \(alice.fingerprint) a b\n"))
    }

    @Test func claimsHoldersAndWithdrawalsSurviveARestartLineForLine() async throws {
        let folder = TemporaryFolder()
        let carol = VerifiedIdentity(name: "carol", role: .peer, groups: [], fingerprint: String(repeating: "3", count: 64), serial: "03")
        do {
            let registry = try Registry(folder: folder.path, timeToLive: 300)
            _ = try await registry.share(file: fileA, size: 5, name: "a b", signer: alice, address: "127.0.0.1:1", identity: alice)
            _ = try await registry.share(file: fileA, size: 6, name: "squat", signer: bob, address: "127.0.0.1:2", identity: bob)
            _ = try await registry.share(file: fileA, size: 6, name: "squat", signer: bob, address: "127.0.0.1:3", identity: carol)
            // carol moves under alice's claim: still one entry of hers.
            _ = try await registry.share(file: fileA, size: 5, name: "a b", signer: alice, address: "127.0.0.1:4", identity: carol)
            #expect(try await registry.remove(file: fileA, address: "127.0.0.1:2", identity: bob, isAdmin: false) == .done("withdrew \(fileA) from the network"))
            _ = try await registry.share(file: fileB, size: 7, name: "b", signer: bob, address: "127.0.0.1:2", identity: bob)
            #expect(try await registry.remove(file: fileB, address: "127.0.0.1:9", identity: carol, isAdmin: true) == .done("withdrew \(fileB) from the network"))
            // alice moves away and back: the journal grows past twice the state, so a start compacts it.
            for port in [5, 1, 5, 1, 5, 1] {
                _ = try await registry.share(file: fileA, size: 5, name: "a b", signer: alice, address: "127.0.0.1:\(port)", identity: alice)
            }
        }
        let reopened = try Registry(folder: folder.path, timeToLive: 300, compactionThreshold: 0)
        // The compacted journal: for each file (in no set order), its claims, their holders (by
        // fingerprint, under their signer), withdrawals.
        let lines = try String(contentsOfFile: folder.file("seeders.txt"), encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 7)
        #expect(lines.filter { $0.contains("\(fileA)") } == [
            "claim \(fileA) 5 alice \(alice.fingerprint) a b",
            "claim \(fileA) 6 bob \(bob.fingerprint) squat",
            "hold \(fileA) alice 127.0.0.1:1 alice \(alice.fingerprint)",
            "hold \(fileA) alice 127.0.0.1:4 carol \(carol.fingerprint)",
            "withdraw \(fileA) bob",
        ])
        #expect(lines.filter { $0.contains("\(fileB)") } == [
            "claim \(fileB) 7 bob \(bob.fingerprint) b",
            "withdraw \(fileB)",
        ])
        #expect(reopened.counts.holders == 2)
        guard case .holders(5, "a b", let holders) = reopened.holders(of: fileA) else {
            Issue.record("alice's claim was lost")
            return
        }
        #expect(holders.map(\.name).sorted() == ["alice", "carol"])
        guard case .refused(.withdrawn, _) = try await reopened.share(file: fileA, size: 6, name: "squat", signer: bob, address: "127.0.0.1:2", identity: bob),
              case .refused(.withdrawn, _) = try await reopened.share(file: fileB, size: 7, name: "b", signer: bob, address: "127.0.0.1:2", identity: bob) else {
            Issue.record("a withdrawal was lost across a restart")
            return
        }
    }

    @Test(arguments: [
        "claim \(fileA) 5 alice \(String(repeating: "1", count: 64))",
        "claim \(fileA) 5 alice 1111 a",
        "hold \(fileA) alice 127.0.0.1:1 alice",
        "hold \(fileA) alice 127.0.0.1:1  alice \(String(repeating: "1", count: 64))",
        "withdraw \(fileA) alice extra",
        "file \(fileA) 5 alice",
        "file \(fileA) 5  alice a",
        "leave 127.0.0.1:1 alice \(String(repeating: "1", count: 64)) extra",
    ])
    func aMalformedLineOfTheMergedFormIsRefusedWithItsNumber(line: String) throws {
        let folder = TemporaryFolder()
        try FileIO.makeFolder(folder.path, mode: 0o755)
        try "claim \(fileA) 5 alice \(alice.fingerprint) a\n\(line)\nallow \(fileA)\n".write(toFile: folder.file("seeders.txt"), atomically: true, encoding: .utf8)
        let error = #expect(throws: JournalError.self) { try Registry(folder: folder.path, timeToLive: 300) }
        #expect(error?.line == 2)
    }

    @Test func theOwnershipLinesOfTheFirstFormatKeepTheClaimWithoutAHolder() async throws {
        let folder = TemporaryFolder()
        try FileIO.makeFolder(folder.path, mode: 0o755)
        try """
            share \(fileA) 5 - alice - a
            remove \(fileA) - alice
            share \(fileA) 5 127.0.0.1:2 bob \(bob.fingerprint) a

            """.write(toFile: folder.file("seeders.txt"), atomically: true, encoding: .utf8)
        let registry = try Registry(folder: folder.path, timeToLive: 300)
        #expect(registry.counts.holders == 1)
        #expect(try await registry.remove(file: fileA, address: "127.0.0.1:1", identity: alice, isAdmin: false) == .done("withdrew \(fileA) from the network"))
        #expect(registry.holders(of: fileA) == .failure(code: .fileNotFound, message: "no peer shares \(fileA)"))
    }

    @Test func theOwnerLineOfTheUnprovedCompactFormKeepsTheClaimAndIsRewritten() async throws {
        let folder = TemporaryFolder()
        let path = folder.file("seeders.txt")
        try FileIO.makeFolder(folder.path, mode: 0o755)
        try """
            file \(fileA) 5 alice a b
            share \(fileA) 5 127.0.0.1:2 bob \(bob.fingerprint) a b

            """.write(toFile: path, atomically: true, encoding: .utf8)
        let registry = try Registry(folder: folder.path, timeToLive: 300)
        guard case .holders(5, "a b", let holders) = registry.holders(of: fileA) else {
            Issue.record("the file line was not read")
            return
        }
        #expect(holders.map(\.name) == ["bob"])
        #expect(try String(contentsOfFile: path, encoding: .utf8) == """
            claim \(fileA) 5 alice - a b
            hold \(fileA) alice 127.0.0.1:2 bob \(bob.fingerprint)

            """)
        #expect(try await registry.remove(file: fileA, address: "127.0.0.1:1", identity: alice, isAdmin: false) == .done("withdrew \(fileA) from the network"))
    }

    @Test func theFilesQuotaCountsHoldingsUnderEverySigner() async throws {
        let folder = TemporaryFolder()
        let registry = try Registry(folder: folder.path, timeToLive: 300, maximumFilesPerPeer: 1)
        #expect(try await registry.share(file: fileA, size: 5, name: "a", signer: alice, address: "127.0.0.1:1", identity: alice) == .done("shared \(fileA) from 127.0.0.1:1"))
        // Moving to another signer's claim of the same root is no new file.
        #expect(try await registry.share(file: fileA, size: 6, name: "a", signer: bob, address: "127.0.0.1:1", identity: alice) == .done("shared \(fileA) from 127.0.0.1:1"))
        guard case .refused(.quota, _) = try await registry.share(file: fileB, size: 5, name: "b", signer: bob, address: "127.0.0.1:1", identity: alice) else {
            Issue.record("a share over the quota was accepted under another signer")
            return
        }
        #expect(registry.counts.holders == 1)
    }
}

@Suite struct AccessControlListTests {
    private func identity(_ name: String, groups: [String] = []) -> VerifiedIdentity {
        VerifiedIdentity(name: name, role: .peer, groups: groups, fingerprint: "", serial: "")
    }

    @Test func rulesAllowByNameGroupOrAnyoneAndDenyTheRest() async throws {
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

    @Test func anEmptyFileDeniesEverything() async throws {
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

/// A journal writer that, when told, writes half of the next append and then fails as a full disk does.
final class FailingWrites: @unchecked Sendable {
    private let lock = NSLock()
    private var failing = false

    func failNext() { lock.withLock { failing = true } }

    var write: AppendLog.Write {
        { [self] fd, buffer in
            let fail = lock.withLock { () -> Bool in
                defer { failing = false }
                return failing
            }
            guard fail else { return Foundation.write(fd, buffer.baseAddress, buffer.count) }
            _ = Foundation.write(fd, buffer.baseAddress, buffer.count / 2)
            errno = ENOSPC
            return -1
        }
    }
}

/// A journal writer whose first write waits until the test releases it, and that counts writes.
final class BlockingWrites: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    private let started = DispatchSemaphore(value: 0)
    private let gate = DispatchSemaphore(value: 0)

    var calls: Int { lock.withLock { count } }

    /// Waits until the first write has begun.
    func entered() async {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                self.started.wait()
                continuation.resume()
            }
        }
    }

    func release() { gate.signal() }

    var write: AppendLog.Write {
        { [self] fd, buffer in
            let call = lock.withLock { () -> Int in
                count += 1
                return count
            }
            if call == 1 {
                started.signal()
                gate.wait()
            }
            return Foundation.write(fd, buffer.baseAddress, buffer.count)
        }
    }
}
