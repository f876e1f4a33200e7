import Foundation
import MTorrentFormat
import NIOCore
import NIOPosix
import PKI
import PKITesting
import Peer
import TLS
import Testing
import Wire
import X509

/// Revocation that reaches every machine by itself: each tracker and peer has a PKI folder of its
/// own, as on separate machines, and only the trackers' folders are ever given a new CRL.
@Suite(.serialized) struct TrustLifecycleTests {
    private let ca: TestAuthority
    private var folder: String { ca.folder.path }
    private let fileSize = 8 * 1024 * 1024

    init() throws {
        ca = try TestAuthority()
        try ca.identity(.tracker(name: "tracker1", dnsNames: [], ipAddresses: ["127.0.0.1"], days: 30))
        for peer in ["alice", "bob", "carol"] { try ca.peer(peer) }
        var generator = SplitMix(seed: 7)
        let bytes = (0..<fileSize / 8).flatMap { _ in withUnsafeBytes(of: generator.next()) { Array($0) } }
        try Data(bytes).write(to: URL(fileURLWithPath: ca.folder.file("data.bin")))
    }

    /// The PKI folder of one machine: the CA certificate, the CRL of the moment, and its own
    /// certificate and key, copied from the CA.
    private func machine(_ name: String) throws -> PKILayout {
        let layout = PKILayout(folder: ca.folder.file("machine-\(name)"))
        try FileManager.default.createDirectory(atPath: layout.issuedFolder, withIntermediateDirectories: true)
        for path in [\PKILayout.authorityCertificate, \.revocationList] {
            try FileManager.default.copyItem(atPath: ca.layout[keyPath: path], toPath: layout[keyPath: path])
        }
        try FileManager.default.copyItem(atPath: ca.layout.certificate(named: name), toPath: layout.certificate(named: name))
        try FileManager.default.copyItem(atPath: ca.layout.privateKey(named: name), toPath: layout.privateKey(named: name))
        return layout
    }

    private func tracker() throws -> (TrackerProcess, PKILayout) {
        let layout = try machine("tracker1")
        let process = try TrackerProcess(folder: folder, arguments: ["--pki", layout.folder, "--name", "tracker1", "--data", ca.folder.file("tracker-data")])
        return (process, layout)
    }

    private func peer(_ name: String, trackers: [String], uploadKiBPerSecond: Int = 0) throws -> (PeerProcess, PKILayout) {
        let layout = try machine(name)
        let config = ca.folder.file("\(name).conf")
        try "upload-limit = \(uploadKiBPerSecond)\ndiscovery-interval = 1\nstall-timeout = 2\n".write(toFile: config, atomically: true, encoding: .utf8)
        let process = try PeerProcess(folder: folder, name: name, trackers: trackers, pki: layout.folder, extra: ["--config", config])
        return (process, layout)
    }

    /// Copies a file the way an operator's `cp` does: rewritten in place, not renamed over.
    private func copyInPlace(_ source: String, to destination: String) throws {
        try Data(contentsOf: URL(fileURLWithPath: source)).write(to: URL(fileURLWithPath: destination))
    }

    /// The holders the tracker lists for `file`, asked as `name` over mutual TLS.
    private func holderRecords(of file: FileID, at tracker: TrackerAddress, askedAs name: String) async throws -> [HolderRecord] {
        let identity = try SigningIdentity.load(named: name, from: ca.layout)
        let tls = try TLSBackend.openssl.makeContext(TLSConfiguration(identity: identity, trust: TrustSource(try ca.trust()), peerRole: .tracker))
        let client = TrackerClient(address: tracker, tls: tls, group: MultiThreadedEventLoopGroup.singleton)
        defer { client.close() }
        guard case .holders(_, _, let records) = try await client.send(.get(file: file)) else { return [] }
        return records
    }

    /// The names the tracker lists as holders of `file`.
    private func holders(of file: FileID, at tracker: TrackerAddress, askedAs name: String) async throws -> [String] {
        try await holderRecords(of: file, at: tracker, askedAs: name).map(\.name).sorted()
    }

    private func fileContents(_ path: String) -> Data? { FileManager.default.contents(atPath: path) }

    @Test func aRevocationGivenOnlyToTheTrackerReachesEveryPeerAndCutsTheirTransfers() async throws {
        let (t1, trackerPKI) = try tracker()
        let trackers = [t1.address.description, "127.0.0.1:1"]
        // alice seeds at 128 KiB/s: carol's download of 8 MiB would take about 64 s, long enough
        // for the revocation to reach alice even on a loaded machine; the cut ends it much sooner.
        let (alice, _) = try peer("alice", trackers: trackers, uploadKiBPerSecond: 128)
        #expect(try alice.run("share data.bin data.mtorrent").hasPrefix("SUCCESS:"))
        let (bob, bobPKI) = try peer("bob", trackers: trackers)
        let (carol, _) = try peer("carol", trackers: trackers)
        #expect(carol.send("get data.mtorrent carol.bin"))
        let file = try #require(FileID(bytes: try MTorrent.load(from: ca.folder.file("data.mtorrent"), trust: ca.trust()).0.root))
        var listed: [String] = []
        // carol is listed once she announces the pieces she verified; on a loaded machine that
        // can take a while, and the transfer leaves room for it.
        let deadline = Date() + 30
        while Date() < deadline, listed != ["alice", "carol"] {
            listed = try await holders(of: file, at: t1.address, askedAs: "bob")
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(listed == ["alice", "carol"], "carol announces the pieces she has")

        _ = try ca.authority.revoke(name: "carol", reason: .keyCompromise)
        // The new list goes to the tracker's folder only; no process is signalled.
        try copyInPlace(ca.layout.revocationList, to: trackerPKI.revocationList)
        let newest = fileContents(ca.layout.revocationList)

        #expect(alice.logShows("adopted a newer revocation list", within: 15), "\(alice.log.suffix(2000))")
        #expect(alice.logShows("closing an upload to a revoked certificate", "peer=carol", within: 5))
        #expect(bob.logShows("adopted a newer revocation list", within: 15), "\(bob.log.suffix(2000))")
        #expect(fileContents(bobPKI.revocationList) == newest, "bob stores the list for his next start")
        #expect(try await holders(of: file, at: t1.address, askedAs: "bob") == ["alice"])
        let summary = carol.answer(timeout: 20)
        #expect(summary.hasPrefix("FAILURE: DOWNLOAD_FAILED"), "\(summary)")
    }

    /// The serial (hex, as openssl prints it) of the certificate a TLS server at `address` presents.
    private func presentedSerial(at address: TrackerAddress, askedAs name: String) throws -> String {
        let result = try Command.run("/bin/sh", ["-c", """
            openssl s_client -connect \(address) -tls1_3 -cert \(ca.layout.certificate(named: name)) -key \(ca.layout.privateKey(named: name)) \
              -CAfile \(ca.layout.authorityCertificate) < /dev/null 2> /dev/null | openssl x509 -noout -serial
            """], in: folder)
        return result.output.trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "serial=", with: "").lowercased()
    }

    private func serial(of path: String) throws -> String {
        Hex.encode(try TrustStore.loadCertificate(at: path).serialNumber.bytes)
    }

    @Test func renewedCertificatesAreTakenUpWithoutARestartAndTheSharesStay() async throws {
        let (t1, trackerPKI) = try tracker()
        let trackers = [t1.address.description, "127.0.0.1:1"]
        let (alice, alicePKI) = try peer("alice", trackers: trackers)
        #expect(try alice.run("share data.bin data.mtorrent").hasPrefix("SUCCESS:"))
        let file = try #require(FileID(bytes: try MTorrent.load(from: ca.folder.file("data.mtorrent"), trust: ca.trust()).0.root))
        let oldTracker = try serial(of: trackerPKI.certificate(named: "tracker1"))
        #expect(try presentedSerial(at: t1.address, askedAs: "bob") == oldTracker)

        // The CA renews both; only the new certificate files are copied to the machines, no signal.
        try ca.authority.renew(name: "alice")
        try ca.authority.renew(name: "tracker1")
        try copyInPlace(ca.layout.certificate(named: "alice"), to: alicePKI.certificate(named: "alice"))
        try copyInPlace(ca.layout.certificate(named: "tracker1"), to: trackerPKI.certificate(named: "tracker1"))
        let newAlice = try serial(of: alicePKI.certificate(named: "alice"))
        let newTracker = try serial(of: trackerPKI.certificate(named: "tracker1"))
        #expect(alice.logShows("reloaded CA, CRL and own certificate", "renewed, serial \(newAlice)", within: 10), "\(alice.log.suffix(1500))")
        var presented = ""
        let deadline = Date() + 10
        while Date() < deadline, presented != newTracker {
            presented = try presentedSerial(at: t1.address, askedAs: "bob")
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(presented == newTracker, "new connections to the tracker get its renewed certificate")

        // alice announces her share again under the new certificate, and it is fetched from her.
        let renewedFingerprint = try CertificateProfile.fingerprint(of: TrustStore.loadCertificate(at: alicePKI.certificate(named: "alice")))
        var listed: [HolderRecord] = []
        let announced = Date() + 15
        while Date() < announced, !listed.contains(where: { $0.fingerprint == renewedFingerprint }) {
            listed = try await holderRecords(of: file, at: t1.address, askedAs: "bob")
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(listed.contains { $0.fingerprint == renewedFingerprint }, "\(listed)")
        #expect(try alice.run("status").contains("data.bin"))
        let (bob, _) = try peer("bob", trackers: trackers)
        let summary = try bob.run("get data.mtorrent bob.bin")
        #expect(summary.hasPrefix("SUCCESS: downloaded data.bin"), "\(summary)")
    }

    enum Offer: String, CaseIterable, CustomStringConvertible {
        /// Signed by another CA of the same name, with a higher number.
        case forged
        /// Signed by our CA, but older than the list the peer holds.
        case older
        /// Signed by our CA with a higher number, but past its nextUpdate.
        case stale
        var description: String { rawValue }
    }

    @Test(arguments: Offer.allCases)
    func aRevocationListThatIsForgedOlderOrStaleChangesNothing(_ offer: Offer) throws {
        let older = try ca.trust().revocationList
        _ = try ca.authority.renewRevocationList()
        let held = try ca.trust().revocationList
        let list: RevocationList
        switch offer {
        case .forged:
            let theirs = try TestAuthority()  // the same CA name, another key
            for _ in 0..<3 { _ = try theirs.authority.renewRevocationList() }
            list = try theirs.trust().revocationList
        case .older:
            list = older
        case .stale:
            let key = try Certificate.PrivateKey(pemEncoded: String(contentsOfFile: ca.layout.authorityKey, encoding: .utf8))
            list = try RevocationList.sign(
                entries: [], number: held.number + 5, thisUpdate: Date() - 20 * 86400, nextUpdate: Date() - 86400,
                authority: try ca.trust().authority, authorityKey: key
            )
        }
        let insider = try RevocationListTracker(offering: list.derEncoded, name: "tracker1", ca: ca)
        defer { insider.stop() }
        let (bob, bobPKI) = try peer("bob", trackers: [insider.address, "127.0.0.1:1"])
        #expect(bob.logShows("refused a revocation list from a tracker", within: 15), "\(bob.log.suffix(2000))")
        #expect(!bob.log.contains("adopted a newer revocation list"))
        #expect(fileContents(bobPKI.revocationList) == Data(held.pemEncoded.utf8))
        #expect(try bob.run("status").hasPrefix("SUCCESS:"), "the peer keeps serving")
    }
}

/// A tracker with a valid tracker certificate that answers every `CRL` request with the same
/// revocation list, whatever the caller holds, and every other request with OK.
final class RevocationListTracker {
    let address: String
    private let channel: Channel

    init(offering der: [UInt8], name: String, ca: TestAuthority) throws {
        let identity = try SigningIdentity.load(named: name, from: ca.layout)
        let tls = try TLSBackend.openssl.makeContext(TLSConfiguration(identity: identity, trust: TrustSource(try ca.trust()), peerRole: .peer))
        channel = try ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        try TLSHandler(context: tls, side: .server), ByteToMessageHandler(LineFrameDecoder(maximumLength: TrackerRequest.maximumLineLength)),
                        Answerer(der: der),
                    ])
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        address = "127.0.0.1:\(channel.localAddress!.port!)"
    }

    func stop() {
        try? channel.close().wait()
    }

    private final class Answerer: ChannelInboundHandler {
        typealias InboundIn = String
        typealias OutboundOut = ByteBuffer
        let der: [UInt8]

        init(der: [UInt8]) {
            self.der = der
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let answer: TrackerResponse = unwrapInboundIn(data).hasPrefix("CRL ") ? .revocationList(der) : .ok("fine")
            let text = answer.lines.map { $0 + "\n" }.joined()
            context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: text)), promise: nil)
        }
    }
}
