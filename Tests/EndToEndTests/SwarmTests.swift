import Foundation
import MTorrentFormat
import NIOCore
import NIOPosix
import PKI
import PKITesting
import Peer
import Pieces
import TLS
import Testing
import Wire

/// Downloads from many holders at once through the real `tracker` and `peer` binaries on 127.0.0.1.
@Suite(.serialized) struct SwarmTests {
    private let ca: TestAuthority
    private var folder: String { ca.folder.path }
    /// 8 MiB in 32 pieces of 256 KiB, none of them all zeros.
    private let fileSize = 8 * 1024 * 1024
    private let pieceSize = 256 * 1024

    init() throws {
        ca = try TestAuthority()
        try ca.identity(.tracker(name: "tracker1", dnsNames: [], ipAddresses: ["127.0.0.1"], days: 30))
        for peer in ["alice", "bob", "carol"] + (1...6).map({ "leecher\($0)" }) { try ca.peer(peer) }
        var generator = SplitMix(seed: 42)
        let bytes = (0..<fileSize / 8).flatMap { _ in withUnsafeBytes(of: generator.next()) { Array($0) } }
        try Data(bytes).write(to: URL(fileURLWithPath: ca.folder.file("data.bin")))
        try Data(bytes).write(to: URL(fileURLWithPath: ca.folder.file("original.bin")))
    }

    private func tracker() throws -> TrackerProcess {
        try TrackerProcess(folder: folder, arguments: ["--pki", ca.layout.folder, "--name", "tracker1", "--data", ca.folder.file("tracker-data")])
    }

    /// A peer; `uploadKiBPerSecond` slows its uploads so that the others have time to act.
    private func peer(_ name: String, _ tracker: TrackerProcess, uploadKiBPerSecond: Int = 0) throws -> PeerProcess {
        let config = ca.folder.file("\(name).conf")
        try "upload-limit = \(uploadKiBPerSecond)\ndiscovery-interval = 1\nstall-timeout = 2\n".write(toFile: config, atomically: true, encoding: .utf8)
        return try PeerProcess(folder: folder, name: name, trackers: [tracker.address.description, "127.0.0.1:1"], pki: ca.layout.folder, extra: ["--config", config])
    }

    private func sameAsOriginal(_ name: String) -> Bool {
        FileManager.default.contentsEqual(atPath: ca.folder.file("original.bin"), andPath: ca.folder.file(name))
    }

    /// Pieces of `path` that hold the original bytes.
    private func intactPieces(_ path: String) -> Int {
        guard let copy = FileManager.default.contents(atPath: path), let original = FileManager.default.contents(atPath: ca.folder.file("original.bin")),
              copy.count == original.count
        else { return 0 }
        return stride(from: 0, to: original.count, by: pieceSize).filter { copy[$0..<min($0 + pieceSize, copy.count)] == original[$0..<min($0 + pieceSize, original.count)] }.count
    }

    /// `fetched N pieces` from a get summary.
    private func fetchedPieces(_ summary: String) -> Int? {
        guard let range = summary.range(of: "fetched ") else { return nil }
        return Int(summary[range.upperBound...].prefix { $0.isNumber })
    }

    @Test func aCorruptHolderIsBannedAndAnHonestOneCompletesTheFile() throws {
        let t1 = try tracker()
        let alice = try peer("alice", t1)
        #expect(try alice.run("share data.bin data.mtorrent").hasPrefix("SUCCESS:"))
        // bob holds an honest copy and serves it slowly, so that alice is surely asked too.
        let bob = try peer("bob", t1, uploadKiBPerSecond: 2048)
        #expect(try bob.run("get data.mtorrent bob.bin").hasPrefix("SUCCESS:"))
        // Corrupt every piece of alice's copy but keep its size and timestamps: her seeder serves bad bytes.
        try corruptKeepingTimestamps(ca.folder.file("data.bin"), at: Array(stride(from: 100, to: fileSize, by: pieceSize)))
        let carol = try peer("carol", t1)
        let summary = try carol.run("get data.mtorrent carol.bin")
        #expect(summary.hasPrefix("SUCCESS: downloaded data.bin"), "\(summary)")
        #expect(summary.contains("banned alice for corrupt pieces"), "\(summary)")
        #expect(sameAsOriginal("carol.bin"))
        #expect(!FileManager.default.fileExists(atPath: ca.folder.file("carol.bin.part")))
    }

    @Test func aGetKilledMidwayResumesWithoutFetchingVerifiedPiecesAgain() throws {
        let t1 = try tracker()
        // 2 MiB/s: the 8 MiB download takes about 4 s, time enough to kill it midway.
        let alice = try peer("alice", t1, uploadKiBPerSecond: 2048)
        #expect(try alice.run("share data.bin data.mtorrent").hasPrefix("SUCCESS:"))
        let first = try peer("bob", t1)
        #expect(first.send("get data.mtorrent bob.bin"))
        let part = ca.folder.file("bob.bin.part")
        let pieces = fileSize / pieceSize
        var intact = 0
        let deadline = Date() + 30
        while Date() < deadline {
            intact = intactPieces(part)
            if intact >= pieces / 4 { break }
            usleep(50_000)
        }
        kill(first.process.processIdentifier, SIGKILL)
        first.process.waitUntilExit()
        #expect(intact >= pieces / 4 && intact < pieces, "\(intact) of \(pieces) pieces were in the .part when the peer was killed")
        let afterKill = intactPieces(part)
        let again = try peer("bob", t1)
        let summary = try again.run("get data.mtorrent bob.bin")
        #expect(summary.hasPrefix("SUCCESS: downloaded data.bin"), "\(summary)")
        #expect(summary.contains("; \(afterKill) were already verified in the .part of an earlier attempt"), "\(summary)")
        #expect(fetchedPieces(summary) == pieces - afterKill, "\(summary)")
        #expect(sameAsOriginal("bob.bin"))
        #expect(!FileManager.default.fileExists(atPath: part))
    }

    @Test func aHolderThatStopsAnsweringIsLeftForTheOthers() async throws {
        let t1 = try tracker()
        let alice = try peer("alice", t1)
        #expect(try alice.run("share data.bin data.mtorrent").hasPrefix("SUCCESS:"))
        // carol's certificate is valid; her holder offers every piece and never sends one.
        let (torrent, _) = try MTorrent.load(from: ca.folder.file("data.mtorrent"), trust: try ca.trust())
        let (staller, client) = try await MisbehavingHolder.start(.stall, as: "carol", ca: ca, torrent: torrent, tracker: t1.address)
        let bob = try peer("bob", t1)
        let summary = try bob.run("get data.mtorrent bob.bin")
        #expect(summary.hasPrefix("SUCCESS: downloaded data.bin"), "\(summary)")
        #expect(summary.contains("from alice (32)"), "\(summary)")
        #expect(sameAsOriginal("bob.bin"))
        client.close()
        try await staller.close()
    }

    @Test func oneSeederAndSixLeechersAllCompleteByTradingPiecesTheSeederSentOnce() throws {
        let t1 = try tracker()
        // The seeder alone would need 12 s to send six copies at 4 MiB/s.
        let alice = try peer("alice", t1, uploadKiBPerSecond: 4096)
        #expect(try alice.run("share data.bin data.mtorrent").hasPrefix("SUCCESS:"))
        let leechers = try (1...6).map { try peer("leecher\($0)", t1) }
        for (index, leecher) in leechers.enumerated() { #expect(leecher.send("get data.mtorrent copy\(index + 1).bin")) }
        var fromOtherLeechers = 0
        for (index, leecher) in leechers.enumerated() {
            let summary = leecher.answer(timeout: 120)
            #expect(summary.hasPrefix("SUCCESS: downloaded data.bin"), "\(summary)")
            #expect(sameAsOriginal("copy\(index + 1).bin"))
            // "… from leecher3 (12), alice (9), …": count the pieces that did not come from alice.
            for match in summary.matches(of: /(leecher\d) \((\d+)\)/) { fromOtherLeechers += Int(match.output.2) ?? 0 }
        }
        #expect(fromOtherLeechers > 0)
        let status = try alice.run("status")
        let uploaded = status.firstMatch(of: /(\d+) bytes uploaded in all/).flatMap { Int($0.output.1) } ?? Int.max
        // Super-seeding: each piece leaves the seeder about once (without it, 2.1-2.7 times).
        #expect(uploaded <= fileSize * 5 / 4, "\(status)")
    }

    // MARK: - Live transfers that must end

    /// alice seeds data.bin at 256 KiB/s, so that the whole file takes about 32 s, and carol's
    /// `get` of it has fetched its first pieces.
    private func carolDownloadsSlowlyFromAlice() throws -> (tracker: TrackerProcess, alice: PeerProcess, carol: PeerProcess) {
        let t1 = try tracker()
        let alice = try peer("alice", t1, uploadKiBPerSecond: 256)
        #expect(try alice.run("share data.bin data.mtorrent").hasPrefix("SUCCESS:"))
        let carol = try peer("carol", t1)
        #expect(carol.send("get data.mtorrent carol.bin"))
        let deadline = Date() + 10
        while Date() < deadline, intactPieces(ca.folder.file("carol.bin.part")) < 2 { usleep(50_000) }
        return (t1, alice, carol)
    }

    /// carol's get ends with a failure within `seconds`, and leaves no output file.
    private func expectFailure(of carol: PeerProcess, within seconds: Double) {
        let summary = carol.answer(timeout: seconds)
        #expect(summary.hasPrefix("FAILURE: DOWNLOAD_FAILED"), "\(summary)")
        #expect(!FileManager.default.fileExists(atPath: ca.folder.file("carol.bin")))
    }

    /// Revokes `revoked` (alice or carol) during carol's download from alice, and sends SIGHUP to
    /// the other one, which must log `closing` with the revoked peer's name.
    private func revokeDuringADownload(_ revoked: String, logs closing: String, failsWithin seconds: Double) throws {
        let (t1, alice, carol) = try carolDownloadsSlowlyFromAlice()
        defer { withExtendedLifetime((t1, alice)) {} }
        let reloading = revoked == "carol" ? alice : carol
        try ca.authority.revoke(name: revoked, reason: .keyCompromise)
        kill(reloading.process.processIdentifier, SIGHUP)
        #expect(reloading.logShows(closing, "peer=\(revoked)", within: 2))
        expectFailure(of: carol, within: seconds)
    }

    @Test func revokingADownloaderEndsItsTransferAtTheSeeder() throws {
        // About 30 s of the transfer are left; alice refuses carol's attempts to come back.
        try revokeDuringADownload("carol", logs: "closing an upload to a revoked certificate", failsWithin: 12)
    }

    @Test func revokingAHolderEndsTheDownloadFromIt() throws {
        // alice is the only holder: the download fails instead of finishing.
        try revokeDuringADownload("alice", logs: "closing the connection to a holder whose certificate is revoked", failsWithin: 5)
    }

    @Test func removingAFileEndsTheTransfersServingIt() throws {
        let (t1, alice, carol) = try carolDownloadsSlowlyFromAlice()
        defer { withExtendedLifetime(t1) {} }
        #expect(try alice.run("remove data.mtorrent").hasPrefix("SUCCESS:"))
        #expect(alice.logShows("closing an upload: the file is no longer shared", "peer=carol", within: 2))
        expectFailure(of: carol, within: 12)
    }
}

/// A holder with a valid certificate that offers every piece and then misbehaves: it never
/// answers a request, or it sends half of the first block asked for and hangs up.
final class MisbehavingHolder: ChannelInboundHandler {
    typealias InboundIn = PeerFrame
    typealias OutboundOut = ByteBuffer

    enum Behaviour { case stall, hangUpMidPiece }
    let pieceCount: Int
    let behaviour: Behaviour

    init(pieceCount: Int, behaviour: Behaviour) {
        self.pieceCount = pieceCount
        self.behaviour = behaviour
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var out = context.channel.allocator.buffer(capacity: 64)
        switch unwrapInboundIn(data) {
        case .hello:
            PeerFrame.bitfield(Bitfield.full(count: pieceCount).bytes).encode(into: &out)
            context.writeAndFlush(wrapOutboundOut(out), promise: nil)
        case .request(let piece, let offset, let length) where behaviour == .hangUpMidPiece:
            PeerFrame.piece(piece: piece, offset: offset, data: ByteBuffer(repeating: 0x5a, count: Int(length))).encode(into: &out)
            let half = out.getSlice(at: out.readerIndex, length: out.readableBytes / 2)!
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(half)).whenComplete { _ in channel.close(promise: nil) }
        default:
            break
        }
    }

    /// Serves on 127.0.0.1 as `name` and registers at the tracker as a holder of the torrent's file.
    static func start(
        _ behaviour: Behaviour, as name: String, ca: TestAuthority, torrent: MTorrent, tracker: TrackerAddress
    ) async throws -> (server: Channel, client: TrackerClient) {
        let trust = TrustSource(try ca.trust())
        let identity = try SigningIdentity.load(named: name, from: ca.layout)
        let tls = try TLSBackend.openssl.makeContext(TLSConfiguration(identity: identity, trust: trust, peerRole: .peer))
        let group = MultiThreadedEventLoopGroup.singleton
        let pieces = torrent.layout.pieceCount
        let server = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        try TLSHandler(context: tls, side: .server), ByteToMessageHandler(PeerFrameDecoder()),
                        MisbehavingHolder(pieceCount: pieces, behaviour: behaviour),
                    ])
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let trackerTLS = try TLSBackend.openssl.makeContext(TLSConfiguration(identity: identity, trust: trust, peerRole: .tracker))
        let client = TrackerClient(address: tracker, tls: trackerTLS, group: group)
        let file = FileID(bytes: torrent.root)!
        let port = UInt16(server.localAddress!.port!)
        let registered = try await client.send(.share(file: file, port: port, proof: try #require(torrent.signedHeader).bytes))
        guard case .ok = registered else { throw CommandFailure(.trackerError, "the tracker did not record the share: \(registered)") }
        return (server, client)
    }
}
