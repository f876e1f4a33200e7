import Foundation
import MTorrentFormat
import NIOPosix
import PKI
import PKITesting
import Peer
import TLS
import Testing
import Wire

/// The original Mini Torrent flows through the real `tracker` and `peer` binaries on 127.0.0.1.
@Suite(.serialized) struct PeerFlowTests {
    private let ca: TestAuthority
    private var folder: String { ca.folder.path }

    init() throws {
        ca = try TestAuthority()
        for tracker in ["tracker1", "tracker2"] {
            try ca.identity(.tracker(name: tracker, dnsNames: [], ipAddresses: ["127.0.0.1"], days: 30))
        }
        for peer in ["alice", "bob", "carol"] { try ca.peer(peer, groups: peer == "carol" ? ["ops"] : ["lab"]) }
        try Data((0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 9) }).write(to: URL(fileURLWithPath: ca.folder.file("data.bin")))
    }

    private func tracker(_ name: String, acl: String? = nil) throws -> TrackerProcess {
        var arguments = ["--pki", ca.layout.folder, "--name", name, "--data", ca.folder.file("\(name)-data")]
        if let acl {
            try acl.write(toFile: ca.folder.file("acl"), atomically: true, encoding: .utf8)
            arguments += ["--acl", ca.folder.file("acl")]
        }
        return try TrackerProcess(folder: folder, arguments: arguments)
    }

    private func peer(_ name: String, _ trackers: [String], pki: String? = nil) throws -> PeerProcess {
        try PeerProcess(folder: folder, name: name, trackers: trackers, pki: pki ?? ca.layout.folder)
    }

    /// One `--json` answer line as an object.
    private func object(_ line: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
    }

    @Test func jsonAnswersCarryOkCodeMessageAndTheCommandsFields() throws {
        let t1 = try tracker("tracker1")
        let alice = try PeerProcess(folder: folder, name: "alice", trackers: [t1.address.description, "127.0.0.1:1"], pki: ca.layout.folder, extra: ["--json"])
        let shared = try object(try alice.run("share data.bin data.mtorrent"))
        #expect(shared["ok"] as? Bool == true && shared["code"] as? String == "OK")
        #expect(shared["bytes"] as? Int == 3_000_000 && (shared["root"] as? String)?.count == 64)
        #expect((shared["trackers"] as? [[String: Any]])?.compactMap { $0["accepted"] as? Bool } == [true, false])
        let bob = try PeerProcess(folder: folder, name: "bob", trackers: [t1.address.description, "127.0.0.1:1"], pki: ca.layout.folder, extra: ["--json"])
        let got = try object(try bob.run("get data.mtorrent copy.bin"))
        #expect(got["ok"] as? Bool == true, "\(got)")
        #expect(got["bytes"] as? Int == 3_000_000 && got["pieces"] as? Int == got["fetched_pieces"] as? Int)
        #expect((got["holders"] as? [String: Int])?["alice"] == got["pieces"] as? Int)
        #expect((got["rate_mb_s"] as? Double ?? 0) > 0 && got["seeding"] as? Bool == true)
        let status = try object(try alice.run("status"))
        #expect((status["shares"] as? [[String: Any]])?.first?["name"] as? String == "data.bin")
        #expect((status["uploaded"] as? Int ?? 0) >= 3_000_000)
        #expect((status["downloads"] as? [Any])?.isEmpty == true)
        #expect((status["trackers"] as? [[String: Any]])?.compactMap { $0["reachable"] as? Bool } == [true, false])
        let failed = try object(try bob.run("get missing.mtorrent x.bin"))
        #expect(failed["ok"] as? Bool == false && failed["code"] as? String == "MTORRENT_FILE_NOT_FOUND", "\(failed)")
        #expect((failed["message"] as? String)?.isEmpty == false)
        let mistake = try object(try bob.run("fetch data.mtorrent"))
        #expect(mistake["ok"] as? Bool == false && mistake["code"] as? String == "UNKNOWN_COMMAND", "\(mistake)")
    }

    @Test func shareGetAndRemoveMoveAVerifiedCopy() throws {
        let t1 = try tracker("tracker1")
        let t2 = try tracker("tracker2")
        let trackers = [t1.address.description, t2.address.description]
        let alice = try peer("alice", trackers)
        #expect(try alice.run("share data.bin data.mtorrent").hasPrefix("SUCCESS: shared data.bin"))
        #expect(try alice.run("share data.bin data.mtorrent").hasPrefix("FAILURE: ALREADY_EXISTS"))
        #expect(try alice.run("share missing.bin other.mtorrent").hasPrefix("FAILURE: FILE_NOT_FOUND"))
        let bob = try peer("bob", trackers)
        #expect(try bob.run("get data.mtorrent copy.bin").hasPrefix("SUCCESS: downloaded data.bin to copy.bin"))
        #expect(FileManager.default.contentsEqual(atPath: ca.folder.file("data.bin"), andPath: ca.folder.file("copy.bin")))
        #expect(!FileManager.default.fileExists(atPath: ca.folder.file("copy.bin.part")))
        #expect(try bob.run("get data.mtorrent copy.bin").hasPrefix("FAILURE: ALREADY_EXISTS"))
        #expect(try bob.run("get nothing.mtorrent x.bin").hasPrefix("FAILURE: MTORRENT_FILE_NOT_FOUND"))
        #expect(try bob.run("fetch everything").hasPrefix("FAILURE: UNKNOWN_COMMAND 'fetch' is not a command"))
        #expect(bob.finish() == 1)
        #expect(try alice.run("remove data.mtorrent").hasPrefix("SUCCESS:"))
        #expect(FileManager.default.fileExists(atPath: ca.folder.file("data.bin")))
        let carol = try peer("carol", trackers)
        #expect(try carol.run("get data.mtorrent carol.bin").hasPrefix("FAILURE: NO_SEEDERS"))
        #expect(try carol.run("exit") == "SUCCESS: leaving the trackers")
        #expect(carol.finish() == 1)
        #expect(try alice.run("exit") == "SUCCESS: leaving the trackers")
        // Two of alice's commands failed (ALREADY_EXISTS, FILE_NOT_FOUND).
        #expect(alice.finish() == 1)
    }

    @Test func seedingResumesAfterARestartFromTheShareIndex() throws {
        let t1 = try tracker("tracker1")
        let trackers = [t1.address.description, "127.0.0.1:1"]
        let first = try peer("alice", trackers)
        #expect(try first.run("share data.bin data.mtorrent").hasPrefix("SUCCESS:"))
        #expect(first.finish() == 0)
        // An index written before shares carried proof has no signed header: it is read from the .mtorrent.
        let index = ca.folder.file("state-alice/shares.json")
        var entries = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: index))) as? [[String: Any]])
        #expect(entries.first?["signedHeader"] != nil)
        for position in entries.indices { entries[position]["signedHeader"] = nil }
        try JSONSerialization.data(withJSONObject: entries).write(to: URL(fileURLWithPath: index))
        // The same peer starts again with no command: it serves and re-announces what it shared.
        let again = try peer("alice", trackers)
        let bob = try peer("bob", trackers)
        #expect(try bob.run("get data.mtorrent copy.bin").hasPrefix("SUCCESS:"))
        #expect(FileManager.default.contentsEqual(atPath: ca.folder.file("data.bin"), andPath: ca.folder.file("copy.bin")))
        _ = again.finish()
        #expect(try String(contentsOfFile: index, encoding: .utf8).contains("signedHeader"))
    }

    @Test func aTamperedMTorrentIsRefusedBeforeAnyConnection() throws {
        let alice = try peer("alice", ["127.0.0.1:1", "127.0.0.1:2"])
        let made = try Command.product(
            "mtorrent", ["create", "data.bin", "--name", "alice", "--tracker", "127.0.0.1:1", "--pki", ca.layout.folder, "-o", "data.mtorrent"], in: folder
        )
        #expect(made.status == 0, "\(made.errors)")
        var text = try String(contentsOfFile: ca.folder.file("data.mtorrent"), encoding: .utf8)
        text = text.replacingOccurrences(of: "name data.bin", with: "name data.bim")
        try text.write(toFile: ca.folder.file("tampered.mtorrent"), atomically: true, encoding: .utf8)
        // The trackers do not exist: asking them would fail with TRACKERS_UNREACHABLE instead.
        #expect(try alice.run("get tampered.mtorrent out.bin").hasPrefix("FAILURE: SIGNATURE_INVALID"))
        #expect(!FileManager.default.fileExists(atPath: ca.folder.file("out.bin.part")))
    }

    @Test func eitherTrackerAloneIsEnoughAndNeitherIsAClearError() throws {
        let t2 = try tracker("tracker2")
        let trackers = ["127.0.0.1:1", t2.address.description]
        let alice = try peer("alice", trackers)
        let shared = try alice.run("share data.bin data.mtorrent")
        #expect(shared.hasPrefix("SUCCESS:") && shared.contains("tracker 127.0.0.1:1 refused the connection"), "\(shared)")
        let bob = try peer("bob", trackers)
        #expect(try bob.run("get data.mtorrent copy.bin").hasPrefix("SUCCESS:"))
        t2.stop()
        #expect(try bob.run("get data.mtorrent copy2.bin").hasPrefix("FAILURE: TRACKERS_UNREACHABLE"))
    }

    @Test func aPeerNamesOneTrackerOrManyAndTheConfigFileMayNameThem() throws {
        let t1 = try tracker("tracker1")
        let t2 = try tracker("tracker2")
        // One tracker, as the only one: the .mtorrent names just it.
        let alice = try peer("alice", [t1.address.description])
        #expect(try alice.run("share data.bin data.mtorrent").hasPrefix("SUCCESS:"))
        let mtorrent = try String(contentsOfFile: ca.folder.file("data.mtorrent"), encoding: .utf8)
        #expect(mtorrent.components(separatedBy: "\ntracker ").count == 2, "\(mtorrent.prefix(200))")
        // Three trackers, one of which is down and one of which knows nothing: all are asked at once.
        let bob = try peer("bob", ["127.0.0.1:1", t2.address.description, t1.address.description])
        #expect(try bob.run("get data.mtorrent copy.bin").hasPrefix("SUCCESS:"))
        #expect(FileManager.default.contentsEqual(atPath: ca.folder.file("data.bin"), andPath: ca.folder.file("copy.bin")))
        // No tracker on the command line: the config file's `trackers` list.
        try "trackers = \(t2.address) \(t1.address)\n".write(toFile: ca.folder.file("carol.conf"), atomically: true, encoding: .utf8)
        let carol = try PeerProcess(folder: folder, name: "carol", trackers: [], pki: ca.layout.folder, extra: ["--config", ca.folder.file("carol.conf")])
        #expect(try carol.run("get data.mtorrent carol.bin").hasPrefix("SUCCESS:"))
        let status = try carol.run("status")
        #expect(status.contains("\(t2.address) up to date") && status.contains("\(t1.address) up to date"), "\(status)")
        // No tracker anywhere: a clear refusal before anything starts.
        let refused = try Command.product("peer", ["127.0.0.1:0", "--pki", ca.layout.folder, "--name", "carol"], in: folder)
        #expect(refused.status != 0 && refused.errors.contains("at least one tracker"), "\(refused.errors)")
    }

    @Test func commandsAreReadAlikeFromAPipeAndAFileWhateverTheirLineEnds() throws {
        let input = "status\n" + String(repeating: "x", count: 70_000) + "\nstatus\r\nhelp"
        try input.write(toFile: ca.folder.file("commands.txt"), atomically: true, encoding: .utf8)
        let arguments = ["127.0.0.1:0", "127.0.0.1:1", "--pki", ca.layout.folder, "--name", "alice", "--state", ca.folder.file("state-alice")]
        for run in [
            try Command.product("peer", arguments, in: folder, input: input),
            try Command.product("peer", arguments, in: folder, inputFile: ca.folder.file("commands.txt")),
        ] {
            // Commands run side by side, so their answers may come in any order.
            let answers = run.output.split(separator: "\n").map(String.init)
            #expect(answers.count == 4, "\(answers)")
            #expect(answers.count { $0.hasPrefix("SUCCESS: serving") } == 2, "\(answers)")
            #expect(answers.contains("FAILURE: INVALID_ARGUMENTS a command line longer than 65536 bytes was ignored"))
            #expect(answers.contains { $0.hasPrefix("SUCCESS:") && $0.contains("commands: share") }, "\(answers)")
            #expect(run.status == 1)
        }
    }

    @Test func theACLDeniesAndOnlyTheSignerMayWithdraw() throws {
        let t1 = try tracker("tracker1", acl: "allow share,get,remove group lab\n")
        let trackers = [t1.address.description, "127.0.0.1:1"]
        let alice = try peer("alice", trackers)
        #expect(try alice.run("share data.bin data.mtorrent").hasPrefix("SUCCESS:"))
        let carol = try peer("carol", trackers)
        #expect(try carol.run("get data.mtorrent c.bin").hasPrefix("FAILURE: ACCESS_DENIED"))
        let bob = try peer("bob", trackers)
        #expect(try bob.run("remove data.mtorrent").hasPrefix("FAILURE: ACCESS_DENIED"))
        #expect(try bob.run("get data.mtorrent b.bin").hasPrefix("SUCCESS:"))
    }

    @Test func theSignerWithdrawsAndOnlyAnAdminAllowsAgain() throws {
        let t1 = try tracker("tracker1", acl: "allow share,get,remove group lab\nallow admin peer carol\n")
        let trackers = [t1.address.description, "127.0.0.1:1"]
        let alice = try peer("alice", trackers)
        #expect(try alice.run("share data.bin data.mtorrent").hasPrefix("SUCCESS:"))
        let bob = try peer("bob", trackers)
        #expect(try bob.run("get data.mtorrent b.bin").hasPrefix("SUCCESS:"))
        // bob holds a copy, but did not sign it: his remove drops only his own entry.
        let removed = try bob.run("remove data.mtorrent")
        #expect(removed.hasPrefix("SUCCESS:") && removed.contains("removed your entry"), "\(removed)")
        #expect(try bob.run("allow data.mtorrent").hasPrefix("FAILURE: ACCESS_DENIED"))
        let withdrawn = try alice.run("remove data.mtorrent")
        #expect(withdrawn.contains("withdrew"), "\(withdrawn)")
        #expect(try alice.run("share data.bin again.mtorrent").hasPrefix("FAILURE: WITHDRAWN"))
        let carol = try peer("carol", trackers)
        #expect(try carol.run("allow data.mtorrent").hasPrefix("SUCCESS: data.bin may be shared again"))
        #expect(try alice.run("share data.bin again.mtorrent").hasPrefix("SUCCESS:"))
        #expect(try bob.run("get again.mtorrent b2.bin").hasPrefix("SUCCESS:"))
        #expect(FileManager.default.contentsEqual(atPath: ca.folder.file("data.bin"), andPath: ca.folder.file("b2.bin")))
    }

    @Test func aPeerOfAnotherCAIsRefusedByTrackerAndPeers() async throws {
        let t1 = try tracker("tracker1")
        let trackers = [t1.address.description, "127.0.0.1:1"]
        let alice = try peer("alice", trackers)
        #expect(try alice.run("share data.bin data.mtorrent").hasPrefix("SUCCESS:"))
        let other = try TestAuthority()
        try other.peer("mallory")
        let mallory = try peer("mallory", trackers, pki: other.layout.folder)
        let refused = try mallory.run("share data.bin m.mtorrent")
        #expect(refused.hasPrefix("FAILURE: TRACKER_NOT_TRUSTED"), "\(refused)")
        // Straight to alice's serving port with mallory's certificate: the handshake is refused.
        let identity = try SigningIdentity.load(named: "mallory", from: other.layout)
        let tls = try TLSBackend.openssl.makeContext(TLSConfiguration(identity: identity, trust: TrustSource(try other.trust()), peerRole: .peer))
        let address = try #require(TrackerAddress(alice.servingAddress))
        let client = TrackerClient(address: address, tls: tls, group: MultiThreadedEventLoopGroup.singleton)
        await #expect(throws: TrackerUnreachable.self) { try await client.send(.heartbeat(port: 1)) }
    }

    /// alice shares data.bin; then bob is revoked, while bob's machine keeps the CRL from before.
    private func aliceSharesThenBobIsRevoked() throws -> (TrackerProcess, [String], PeerProcess, bobPKI: String) {
        let t1 = try tracker("tracker1")
        let trackers = [t1.address.description, "127.0.0.1:1"]
        let alice = try peer("alice", trackers)
        #expect(try alice.run("share data.bin data.mtorrent").hasPrefix("SUCCESS:"))
        let bobPKI = try machineCopy(of: "bob", from: ca)
        try ca.authority.revoke(name: "bob", reason: .keyCompromise)
        return (t1, trackers, alice, bobPKI)
    }

    @Test func aRevokedPeerIsRefusedAfterTheTrackerReloads() throws {
        let (t1, trackers, _, bobPKI) = try aliceSharesThenBobIsRevoked()
        t1.signal(SIGHUP)
        usleep(500_000)
        let bob = try peer("bob", trackers, pki: bobPKI)
        let refusedByTracker = try bob.run("get data.mtorrent b.bin")
        #expect(refusedByTracker.hasPrefix("FAILURE: CERTIFICATE_REFUSED") && refusedByTracker.contains("revoked"), "\(refusedByTracker)")
        // With the new CRL, bob's own peer refuses to start at all.
        let refused = try peer("bob", trackers)
        #expect(refused.finish() != 0)
    }

    @Test func aSeederRefusesAPeerRevokedAfterItReloads() throws {
        // The tracker is not reloaded: only alice learns of the revocation.
        let (t1, trackers, alice, bobPKI) = try aliceSharesThenBobIsRevoked()
        defer { withExtendedLifetime(t1) {} }
        kill(alice.process.processIdentifier, SIGHUP)
        usleep(500_000)
        let bob = try peer("bob", trackers, pki: bobPKI)
        let refused = try bob.run("get data.mtorrent b.bin")
        #expect(refused.hasPrefix("FAILURE: DOWNLOAD_FAILED"), "\(refused)")
        #expect(refused.contains("alice at \(alice.servingAddress): refused our certificate (it says ours is revoked)"), "\(refused)")
        #expect(!FileManager.default.fileExists(atPath: ca.folder.file("b.bin")))
        // carol, not revoked, is still served.
        let carol = try peer("carol", trackers)
        #expect(try carol.run("get data.mtorrent c.bin").hasPrefix("SUCCESS:"))
    }

    @Test func aCorruptPieceIsNeverWrittenAndItsSenderIsBanned() throws {
        let t1 = try tracker("tracker1")
        let trackers = [t1.address.description, "127.0.0.1:1"]
        let alice = try peer("alice", trackers)
        #expect(try alice.run("share data.bin data.mtorrent").hasPrefix("SUCCESS:"))
        // Corrupt alice's copy but keep its size and timestamps, so her seeder serves bad bytes.
        try corruptKeepingTimestamps(ca.folder.file("data.bin"), at: [1000])
        let bob = try peer("bob", trackers)
        let failure = try bob.run("get data.mtorrent b.bin")
        #expect(failure.hasPrefix("FAILURE: DOWNLOAD_FAILED") && failure.contains("banned for corrupt data: alice"), "\(failure)")
        #expect(!FileManager.default.fileExists(atPath: ca.folder.file("b.bin")))
        // The pieces verified before the bad one stay for a resume; the bad piece was never written.
        if let part = FileManager.default.contents(atPath: ca.folder.file("b.bin.part")) {
            #expect(failure.contains("run the same get again to resume"))
            #expect(part[990..<1010].allSatisfy { $0 == 0 })
        }
    }

    @Test func aSeederStopsServingAFileThatChangedOnDisk() throws {
        let t1 = try tracker("tracker1")
        let trackers = [t1.address.description, "127.0.0.1:1"]
        let alice = try peer("alice", trackers)
        #expect(try alice.run("share data.bin data.mtorrent").hasPrefix("SUCCESS:"))
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: ca.folder.file("data.bin")))
        try handle.seek(toOffset: 1000)
        handle.write(Data([0xde, 0xad]))
        try handle.close()
        let bob = try peer("bob", trackers)
        #expect(try bob.run("get data.mtorrent b.bin").hasPrefix("FAILURE: DOWNLOAD_FAILED"))
        #expect(!FileManager.default.fileExists(atPath: ca.folder.file("b.bin")))
        #expect(!FileManager.default.fileExists(atPath: ca.folder.file("b.bin.part")))
    }
}
