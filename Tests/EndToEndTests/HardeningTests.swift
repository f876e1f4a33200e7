import Foundation
import MTorrentFormat
import NIOCore
import NIOPosix
import PKITesting
import Pieces
import Testing
import Wire

/// Limits, path checks and faults through the real `tracker` and `peer` binaries on 127.0.0.1:
/// whoever misbehaves hits a limit or gets a clear error, and an honest peer is still served.
@Suite(.serialized) struct HardeningTests {
    private let ca: TestAuthority
    private var folder: String { ca.folder.path }
    private let fileSize = 8 * 1024 * 1024

    init() throws {
        ca = try TestAuthority()
        try ca.identity(.tracker(name: "tracker1", dnsNames: [], ipAddresses: ["127.0.0.1"], days: 30))
        for peer in ["alice", "bob", "carol"] { try ca.peer(peer) }
        try makeFile("data.bin", size: fileSize)
    }

    private func makeFile(_ name: String, size: Int) throws {
        var generator = SplitMix(seed: UInt64(size))
        let bytes = (0..<size / 8).flatMap { _ in withUnsafeBytes(of: generator.next()) { Array($0) } }
        try Data(bytes).write(to: URL(fileURLWithPath: ca.folder.file(name)))
    }

    private func tracker(listen: String = "127.0.0.1:0") throws -> TrackerProcess {
        try TrackerProcess(folder: folder, arguments: ["--pki", ca.layout.folder, "--name", "tracker1", "--data", ca.folder.file("tracker-data")], listen: listen)
    }

    /// A peer working in `home` (a folder of the test folder; the test folder itself by default).
    private func peer(_ name: String, _ tracker: TrackerAddress, config: String = "", fileSizeLimit: Int? = nil, home: String? = nil) throws -> PeerProcess {
        let path = ca.folder.file("\(name).conf")
        try (config + "stall-timeout = 2\ndiscovery-interval = 1\n").write(toFile: path, atomically: true, encoding: .utf8)
        return try PeerProcess(
            folder: home.map(ca.folder.file) ?? folder, name: name, trackers: [tracker.description, "127.0.0.1:1"], pki: ca.layout.folder, extra: ["--config", path],
            fileSizeLimit: fileSizeLimit
        )
    }

    private func same(_ a: String, _ b: String) -> Bool {
        FileManager.default.contentsEqual(atPath: ca.folder.file(a), andPath: ca.folder.file(b))
    }

    private func exists(_ name: String) -> Bool { FileManager.default.fileExists(atPath: ca.folder.file(name)) }

    private func honestGet(_ tracker: TrackerAddress, as name: String = "bob", into file: String) throws {
        let bob = try peer(name, tracker)
        let summary = try bob.run("get data.mtorrent \(file)")
        #expect(summary.hasPrefix("SUCCESS: downloaded data.bin"), "\(summary)")
        #expect(same("data.bin", file))
        _ = bob.finish()
    }

    // MARK: - Limits of a peer's server

    @Test func oneCertificateGetsOnlyItsShareOfUploadSlots() async throws {
        let t1 = try tracker()
        let alice = try peer("alice", t1.address, config: "uploads-per-peer = 2\n")
        #expect(try alice.run("share data.bin data.mtorrent").hasPrefix("SUCCESS:"))
        let file = try #require(FileID(bytes: try MTorrent.load(from: ca.folder.file("data.mtorrent"), trust: try ca.trust()).0.root))
        var clients: [RawPeerClient] = []
        for _ in 0..<3 {
            let client = try await RawPeerClient.connect(to: alice.servingAddress, as: "carol", ca: ca)
            client.send([.hello(file: file)])
            _ = try await client.frames { !$0.isEmpty }
            clients.append(client)
        }
        for client in clients.prefix(2) { #expect(try await client.frames().first.map { if case .bitfield = $0 { true } else { false } } == true) }
        let refused = try await clients[2].frames { !$0.isEmpty }
        #expect(refused.first.map { if case .reject(let code, _) = $0 { code == .busy } else { false } } == true, "\(refused)")
        try honestGet(t1.address, into: "bob.bin")
    }

    @Test func aClientQueueingTooManyRequestsIsCutOff() async throws {
        let t1 = try tracker()
        // Every piece offered at once, so that any request is one the queue limit must judge.
        let alice = try peer("alice", t1.address, config: "super-seed-window = 0\n")
        #expect(try alice.run("share data.bin data.mtorrent").hasPrefix("SUCCESS:"))
        let file = try #require(FileID(bytes: try MTorrent.load(from: ca.folder.file("data.mtorrent"), trust: try ca.trust()).0.root))
        let greedy = try await RawPeerClient.connect(to: alice.servingAddress, as: "carol", ca: ca)
        greedy.send([.hello(file: file)] + (0..<100).map { _ in .request(piece: 0, offset: 0, length: 1024) })
        let frames = try await greedy.frames { $0.contains { if case .reject = $0 { true } else { false } } }
        #expect(frames.contains(.reject(code: .tooManyRequests, message: "more than 64 requests waiting")), "\(frames.count) frames")
        #expect(await closes(greedy.channel, within: 5))
        try honestGet(t1.address, into: "bob.bin")
    }

    @Test func aClientThatDoesNotReadIsNotSentMore() async throws {
        try makeFile("big.bin", size: 32 * 1024 * 1024)
        let t1 = try tracker()
        let alice = try peer("alice", t1.address, config: "queued-requests = 200\nsuper-seed-window = 0\n")
        #expect(try alice.run("share big.bin big.mtorrent").hasPrefix("SUCCESS:"))
        let torrent = try MTorrent.load(from: ca.folder.file("big.mtorrent"), trust: try ca.trust()).0
        let slow = try await RawPeerClient.connect(to: alice.servingAddress, as: "carol", ca: ca)
        slow.send([.hello(file: FileID(bytes: torrent.root)!)])
        _ = try await slow.frames { !$0.isEmpty }
        try await slow.stopReading()
        let length = UInt32(torrent.layout.pieceSize)
        slow.send((0..<torrent.layout.pieceCount).map { .request(piece: UInt32($0), offset: 0, length: length) })
        try await Task.sleep(for: .seconds(2))
        // Only what the sockets hold has been sent; the rest waits until the client reads.
        let status = try alice.run("status")
        let uploaded = status.firstMatch(of: /(\d+) bytes uploaded in all/).flatMap { Int($0.output.1) } ?? Int.max
        #expect(uploaded < 24 * 1024 * 1024, "\(status)")
        try await slow.channel.close()
    }

    @Test func connectionsThatHangUpOnAFullQueueCostNothing() async throws {
        let t1 = try tracker()
        // 4 MiB/s: an honest copy takes about 2 s; the requests of the flood would take 160 s.
        let alice = try peer("alice", t1.address, config: "upload-limit = 4096\nsuper-seed-window = 0\n")
        #expect(try alice.run("share data.bin data.mtorrent").hasPrefix("SUCCESS:"))
        let torrent = try MTorrent.load(from: ca.folder.file("data.mtorrent"), trust: try ca.trust()).0
        let file = try #require(FileID(bytes: torrent.root))
        let pieceSize = torrent.layout.pieceSize
        let requests = (0..<64).map { PeerFrame.request(piece: UInt32($0 % torrent.layout.pieceCount), offset: 0, length: UInt32(pieceSize)) }
        // Each client fills its queue and hangs up just after the next one was served its bitfield.
        let floods = 10
        var previous: RawPeerClient?
        for _ in 0..<floods {
            let client = try await RawPeerClient.connect(to: alice.servingAddress, as: "carol", ca: ca)
            client.send([.hello(file: file)])
            _ = try await client.frames { !$0.isEmpty }
            if let previous {
                previous.send(requests)
                try await previous.channel.close()
            }
            previous = client
        }
        previous?.send(requests)
        try await previous?.channel.close()
        try await Task.sleep(for: .seconds(2))
        let status = try alice.run("status")
        let uploaded = status.firstMatch(of: /(\d+) bytes uploaded in all/).flatMap { Int($0.output.1) } ?? Int.max
        // At most a block per client may have left before its hang-up was seen.
        #expect(uploaded <= floods * pieceSize, "\(status)")
        let started = Date()
        try honestGet(t1.address, into: "bob.bin")
        #expect(Date().timeIntervalSince(started) < 20)
        #expect(!alice.log.contains("changed on disk"))
    }

    @Test func silentConnectionsHitTheConnectionLimitAndTimeOut() async throws {
        let t1 = try tracker()
        let alice = try peer("alice", t1.address, config: "max-connections = 3\nhandshake-timeout = 1\nidle-timeout = 5\n")
        #expect(try alice.run("share data.bin data.mtorrent").hasPrefix("SUCCESS:"))
        let address = try #require(TrackerAddress(alice.servingAddress))
        var silent: [Channel] = []
        for _ in 0..<4 {
            silent.append(try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: Int(address.port)).get())
            try await Task.sleep(for: .milliseconds(50))
        }
        // The fourth is closed at once, the first three when their handshake time is up.
        #expect(await closes(silent[3], within: 0.5))
        for channel in silent.prefix(3) { #expect(await closes(channel, within: 5)) }
        // An authenticated client that names the file and then says nothing is closed when idle.
        let idle = try await RawPeerClient.connect(to: alice.servingAddress, as: "carol", ca: ca)
        let file = try #require(FileID(bytes: try MTorrent.load(from: ca.folder.file("data.mtorrent"), trust: try ca.trust()).0.root))
        idle.send([.hello(file: file)])
        #expect(await closes(idle.channel, within: 10))
        try honestGet(t1.address, into: "bob.bin")
    }

    // MARK: - Paths

    @Test func saveLocationsThroughLinksOrNowhereAreRefusedClearly() throws {
        let t1 = try tracker()
        let alice = try peer("alice", t1.address)
        #expect(try alice.run("share data.bin data.mtorrent").hasPrefix("SUCCESS:"))
        let files = FileManager.default
        try files.createDirectory(atPath: ca.folder.file("real"), withIntermediateDirectories: false)
        try files.createSymbolicLink(atPath: ca.folder.file("link"), withDestinationPath: ca.folder.file("real"))
        try "keep".write(toFile: ca.folder.file("victim.txt"), atomically: true, encoding: .utf8)
        try files.createSymbolicLink(atPath: ca.folder.file("out.bin"), withDestinationPath: ca.folder.file("victim.txt"))
        try files.createSymbolicLink(atPath: ca.folder.file("planted.bin.part"), withDestinationPath: ca.folder.file("victim.txt"))
        let bob = try peer("bob", t1.address)
        let throughLink = try bob.run("get data.mtorrent link/copy.bin")
        #expect(throughLink.hasPrefix("FAILURE: INVALID_ARGUMENTS") && throughLink.contains("symbolic link"), "\(throughLink)")
        let linkedSave = try bob.run("get data.mtorrent out.bin")
        #expect(linkedSave.hasPrefix("FAILURE: ALREADY_EXISTS") && linkedSave.contains("symbolic link"), "\(linkedSave)")
        let plantedPart = try bob.run("get data.mtorrent planted.bin")
        #expect(plantedPart.hasPrefix("FAILURE: INVALID_ARGUMENTS") && plantedPart.contains("symbolic link"), "\(plantedPart)")
        let missing = try bob.run("get data.mtorrent nowhere/copy.bin")
        #expect(missing.hasPrefix("FAILURE: INVALID_ARGUMENTS") && missing.contains("does not exist"), "\(missing)")
        #expect(try String(contentsOfFile: ca.folder.file("victim.txt"), encoding: .utf8) == "keep")
        #expect(try files.contentsOfDirectory(atPath: ca.folder.file("real")).isEmpty)
        // A folder nobody may write in (immutable, which stops root too), where the file system allows it.
        try files.createDirectory(atPath: ca.folder.file("locked"), withIntermediateDirectories: false)
        if (try? Command.run("/usr/bin/chattr", ["+i", ca.folder.file("locked")], in: folder))?.status == 0 {
            defer { _ = try? Command.run("/usr/bin/chattr", ["-i", ca.folder.file("locked")], in: folder) }
            let locked = try bob.run("get data.mtorrent locked/copy.bin")
            #expect(locked.hasPrefix("FAILURE:") && (locked.contains("may not write") || locked.contains("not permitted")), "\(locked)")
            #expect(try files.contentsOfDirectory(atPath: ca.folder.file("locked")).isEmpty)
        }
        #expect(try bob.run("get data.mtorrent real/copy.bin").hasPrefix("SUCCESS:"))
    }

    @Test func aFolderAsSaveLocationReceivesTheMTorrentsFileName() throws {
        let t1 = try tracker()
        let alice = try peer("alice", t1.address)
        #expect(try alice.run("share data.bin data.mtorrent").hasPrefix("SUCCESS:"))
        let files = FileManager.default
        for home in ["bob-home", "bob-home/into", "bob-home/slash", "carol-home"] {
            try files.createDirectory(atPath: ca.folder.file(home), withIntermediateDirectories: false)
        }
        let bob = try peer("bob", t1.address, home: "bob-home")
        for (location, written) in [(".", "./data.bin"), ("into", "into/data.bin"), ("slash/", "slash/data.bin")] {
            let summary = try bob.run("get ../data.mtorrent \(location)")
            #expect(summary.hasPrefix("SUCCESS: downloaded data.bin to \(written):"), "\(location): \(summary)")
            #expect(same("data.bin", "bob-home/\(written)"), "\(location)")
        }
        #expect(try bob.run("status").hasPrefix("SUCCESS: serving"))
        let carol = try peer("carol", t1.address, home: "carol-home")
        #expect(try carol.run("get ../data.mtorrent ./").hasPrefix("SUCCESS: downloaded data.bin to ./data.bin:"))
        #expect(same("data.bin", "carol-home/data.bin"))
        let again = try carol.run("get ../data.mtorrent .")
        #expect(again.hasPrefix("FAILURE: ALREADY_EXISTS ./data.bin already exists"), "\(again)")
        #expect(try carol.run("status").hasPrefix("SUCCESS: serving"))
        #expect(carol.finish() == 1)
        #expect(bob.finish() == 0)
    }

    @Test func aSaveLocationThroughALinkAndBackIsRefusedAndWritesNothing() throws {
        let t1 = try tracker()
        let alice = try peer("alice", t1.address)
        #expect(try alice.run("share data.bin data.mtorrent").hasPrefix("SUCCESS:"))
        let files = FileManager.default
        for name in ["real", "elsewhere", "elsewhere/inner"] { try files.createDirectory(atPath: ca.folder.file(name), withIntermediateDirectories: false) }
        try files.createSymbolicLink(atPath: ca.folder.file("real/lnk"), withDestinationPath: ca.folder.file("elsewhere/inner"))
        let bob = try peer("bob", t1.address)
        let refused = try bob.run("get data.mtorrent real/lnk/../out.bin")
        #expect(refused.hasPrefix("FAILURE: INVALID_ARGUMENTS") && refused.contains("symbolic link (real/lnk)"), "\(refused)")
        #expect(!exists("out.bin") && !exists("real/out.bin") && !exists("elsewhere/out.bin") && !exists("elsewhere/out.bin.part"))
        #expect(try bob.run("status").hasPrefix("SUCCESS: serving"))
        #expect(try bob.run("get data.mtorrent real/inner/../out.bin").hasPrefix("FAILURE: INVALID_ARGUMENTS"))
        #expect(try bob.run("get data.mtorrent real/./../real/out.bin").hasPrefix("SUCCESS: downloaded data.bin to real/./../real/out.bin:"))
        #expect(same("data.bin", "real/out.bin"))
    }

    // MARK: - Shell

    @Test func aFileNameWithSpacesIsSharedAndFetchedThroughQuotes() throws {
        try makeFile("my file.bin", size: 1024 * 1024)
        let t1 = try tracker()
        let alice = try peer("alice", t1.address)
        let shared = try alice.run(#"share "my file.bin" 'my file.mtorrent'"#)
        #expect(shared.hasPrefix("SUCCESS: shared my file.bin") && shared.hasSuffix("wrote my file.mtorrent"), "\(shared)")
        let bob = try peer("bob", t1.address)
        #expect(try bob.run(#"get my\ file.mtorrent "my copy.bin""#).hasPrefix("SUCCESS: downloaded my file.bin to my copy.bin:"))
        #expect(same("my file.bin", "my copy.bin"))
        let open = try bob.run(#"get "my file.mtorrent other.bin"#)
        #expect(open.hasPrefix("FAILURE: INVALID_ARGUMENTS") && open.contains("not closed"), "\(open)")
    }

    @Test func sigtermDuringAGetEndsThePeerSoonAndKeepsThePartForResume() throws {
        let t1 = try tracker()
        // 1 MiB/s: the 8 MiB download takes about 8 s.
        let alice = try peer("alice", t1.address, config: "upload-limit = 1024\n")
        #expect(try alice.run("share data.bin data.mtorrent").hasPrefix("SUCCESS:"))
        let bob = try peer("bob", t1.address)
        #expect(bob.send("get data.mtorrent stopped.bin"))
        let started = Date() + 10
        while Date() < started, (try? FileManager.default.attributesOfItem(atPath: ca.folder.file("stopped.bin.part"))[.size] as? Int) ?? 0 < 2 * 256 * 1024 {
            usleep(50_000)
        }
        let signalled = Date()
        kill(bob.process.processIdentifier, SIGTERM)
        let answer = bob.answer(timeout: 15)
        #expect(answer.hasPrefix("FAILURE: DOWNLOAD_FAILED the peer is stopping"), "\(answer)")
        #expect(answer.contains("the verified pieces stay in"), "\(answer)")
        // The peer then leaves the trackers (one deadline at most) and exits.
        let deadline = Date() + 15
        while bob.process.isRunning, Date() < deadline { usleep(50_000) }
        #expect(!bob.process.isRunning, "still running \(Date().timeIntervalSince(signalled)) s after SIGTERM")
        #expect(exists("stopped.bin.part") && !exists("stopped.bin"))
        // The same get resumes from the .part.
        let again = try peer("bob", t1.address)
        let resumed = try again.run("get data.mtorrent stopped.bin")
        #expect(resumed.hasPrefix("SUCCESS: downloaded data.bin") && resumed.contains("were already verified"), "\(resumed)")
        #expect(same("data.bin", "stopped.bin"))
    }

    @Test func sigtermDuringALongShareEndsThePeerWithinItsStopTimeout() throws {
        // A sparse 64 GiB file: hashing it takes far longer than this test waits.
        let path = ca.folder.file("huge.bin")
        #expect(FileManager.default.createFile(atPath: path, contents: nil))
        let handle = try #require(FileHandle(forWritingAtPath: path))
        try handle.truncate(atOffset: 64 << 30)
        try handle.close()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let t1 = try tracker()
        let alice = try peer("alice", t1.address, config: "stop-timeout = 2\n")
        #expect(alice.send("share huge.bin huge.mtorrent"))
        usleep(500_000)
        let signalled = Date()
        kill(alice.process.processIdentifier, SIGTERM)
        let deadline = Date() + 15
        while alice.process.isRunning, Date() < deadline { usleep(50_000) }
        #expect(!alice.process.isRunning, "still running \(Date().timeIntervalSince(signalled)) s after SIGTERM, past its stop-timeout of 2 s")
        guard !alice.process.isRunning else { return }
        #expect(alice.process.terminationStatus == 1)
        #expect(alice.logShows("stopping took longer than 2 s (stop-timeout)", within: 1), "\(alice.log.suffix(1000))")
        #expect(!exists("huge.mtorrent"), "a share cut short by the stop wrote its .mtorrent")
    }

    @Test func aKeepSeedingPeerServesAfterItsCommandsAndStopsOnSigterm() throws {
        let t1 = try tracker()
        let alice = try PeerProcess(folder: folder, name: "alice", trackers: [t1.address.description, "127.0.0.1:1"], pki: ca.layout.folder, extra: ["--keep-seeding"])
        #expect(try alice.run("share data.bin data.mtorrent").hasPrefix("SUCCESS:"))
        alice.closeInput()
        #expect(alice.logShows("keeping on seeding until SIGINT or SIGTERM", within: 10))
        try honestGet(t1.address, into: "kept.bin")
        kill(alice.process.processIdentifier, SIGTERM)
        let deadline = Date() + 15
        while alice.process.isRunning, Date() < deadline { usleep(50_000) }
        #expect(!alice.process.isRunning)
        #expect(alice.process.terminationStatus == 0)
    }

    @Test func statusHelpAndMistakesAreAnsweredAtOnceWhileASlowGetRuns() throws {
        let t1 = try tracker()
        // 1 MiB/s: the 8 MiB download takes about 8 s.
        let alice = try peer("alice", t1.address, config: "upload-limit = 1024\n")
        #expect(try alice.run("share data.bin data.mtorrent").hasPrefix("SUCCESS:"))
        let bob = try peer("bob", t1.address)
        #expect(bob.send("get data.mtorrent slow.bin"))
        usleep(500_000)
        let status = try bob.run("status", timeout: 5)
        #expect(status.hasPrefix("SUCCESS: serving 0 file(s)"), "\(status)")
        #expect(status.contains("downloading data.bin ") && status.contains("from 1 holder(s)"), "\(status)")
        #expect(try bob.run("help", timeout: 5).hasPrefix("SUCCESS: commands: share <file> <mtorrent> | get <mtorrent> <save_location> |"))
        let unknown = try bob.run("shar data.bin x.mtorrent", timeout: 5)
        #expect(unknown == "FAILURE: UNKNOWN_COMMAND 'shar' is not a command; did you mean 'share'? Type help for the list")
        #expect(!exists("slow.bin"))
        // Naming the file the get writes, this command waits for the get, then finds it there.
        #expect(bob.send("get data.mtorrent slow.bin"))
        let done = bob.answer(timeout: 60)
        #expect(done.hasPrefix("SUCCESS: downloaded data.bin to slow.bin:"), "\(done)")
        #expect(bob.answer(timeout: 10).hasPrefix("FAILURE: ALREADY_EXISTS slow.bin already exists"))
        #expect(same("data.bin", "slow.bin"))
        #expect(try bob.run("exit") == "SUCCESS: leaving the trackers")
        #expect(bob.finish() == 1)
    }

    // MARK: - Faults

    @Test func aHolderThatHangsUpMidPieceIsReplacedByAnother() async throws {
        let t1 = try tracker()
        let alice = try peer("alice", t1.address, config: "upload-limit = 4096\nsuper-seed-window = 0\n")
        #expect(try alice.run("share data.bin data.mtorrent").hasPrefix("SUCCESS:"))
        let (torrent, _) = try MTorrent.load(from: ca.folder.file("data.mtorrent"), trust: try ca.trust())
        let (quitter, client) = try await MisbehavingHolder.start(.hangUpMidPiece, as: "carol", ca: ca, torrent: torrent, tracker: t1.address)
        let bob = try peer("bob", t1.address)
        let summary = try bob.run("get data.mtorrent bob.bin")
        #expect(summary.hasPrefix("SUCCESS: downloaded data.bin") && summary.contains("from alice (32)"), "\(summary)")
        #expect(same("data.bin", "bob.bin"))
        client.close()
        try await quitter.close()
    }

    @Test func aTrackerRestartDuringADownloadDoesNotStopIt() throws {
        let first = try tracker()
        let address = first.address
        // 2 MiB/s: the download takes about 4 s; the tracker is killed and restarted in the middle.
        let alice = try peer("alice", address, config: "upload-limit = 2048\n")
        #expect(try alice.run("share data.bin data.mtorrent").hasPrefix("SUCCESS:"))
        let bob = try peer("bob", address)
        #expect(bob.send("get data.mtorrent bob.bin"))
        usleep(1_000_000)
        first.kill9()
        usleep(500_000)
        let second = try tracker(listen: address.description)
        let summary = bob.answer(timeout: 60)
        #expect(summary.hasPrefix("SUCCESS: downloaded data.bin"), "\(summary)")
        #expect(same("data.bin", "bob.bin"))
        // The restarted tracker still lists alice's answered share.
        try honestGet(second.address, as: "carol", into: "carol.bin")
    }

    @Test func aFullDiskIsReportedBeforeAnyTransferAndARetryWorks() throws {
        let t1 = try tracker()
        let alice = try peer("alice", t1.address)
        #expect(try alice.run("share data.bin data.mtorrent").hasPrefix("SUCCESS:"))
        // bob may write files of at most 1 MB, as if his disk held only that much.
        let cramped = try peer("bob", t1.address, fileSizeLimit: 1_000_000)
        let failure = try cramped.run("get data.mtorrent bob.bin")
        #expect(failure.hasPrefix("FAILURE: DISK_FULL"), "\(failure)")
        #expect(!exists("bob.bin") && !exists("bob.bin.part"))
        _ = cramped.finish()
        try honestGet(t1.address, into: "bob.bin")
    }
}
