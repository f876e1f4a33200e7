import Foundation
import MTorrentFormat
import PKI
import PKITesting
import Testing

/// The `/metrics` endpoints of a real tracker and two real peers on 127.0.0.1, scraped over HTTP
/// after a share and a get, against what happened.
@Suite(.serialized) struct MetricsTests {
    private let ca: TestAuthority
    private var folder: String { ca.folder.path }
    /// Not a whole number of pieces, so that the last piece is a short one.
    private let fileSize = 3 * 1024 * 1024 + 12345

    init() throws {
        ca = try TestAuthority()
        try ca.identity(.tracker(name: "tracker1", dnsNames: [], ipAddresses: ["127.0.0.1"], days: 30))
        for peer in ["alice", "bob"] { try ca.peer(peer) }
        var generator = SplitMix(seed: 14)
        let bytes = (0..<(fileSize + 7) / 8).flatMap { _ in withUnsafeBytes(of: generator.next()) { Array($0) } }.prefix(fileSize)
        try Data(bytes).write(to: URL(fileURLWithPath: ca.folder.file("data.bin")))
    }

    private func peer(_ name: String, _ tracker: TrackerProcess) throws -> PeerProcess {
        try PeerProcess(
            folder: folder, name: name, trackers: [tracker.address.description, "127.0.0.1:1"], pki: ca.layout.folder, extra: ["--metrics", "127.0.0.1:0"]
        )
    }

    /// The text a `/metrics` endpoint answers, fetched with curl.
    private func scrape(_ url: String) throws -> String {
        let result = try Command.system("curl", ["--silent", "--show-error", "--fail", "--max-time", "10", url], in: folder)
        #expect(result.status == 0, "curl \(url): \(result.errors)")
        return result.output
    }

    @Test func theScrapesCountTheShareTheGetAndTheBytesMoved() throws {
        let tracker = try TrackerProcess(
            folder: folder, arguments: ["--pki", ca.layout.folder, "--name", "tracker1", "--data", ca.folder.file("tracker-data"), "--metrics", "127.0.0.1:0"]
        )
        defer { tracker.stop() }
        let alice = try peer("alice", tracker)
        let bob = try peer("bob", tracker)
        let trackerURL = try #require(tracker.metricsURL)
        let aliceURL = try #require(alice.metricsURL, "\(alice.log)")
        let bobURL = try #require(bob.metricsURL, "\(bob.log)")
        #expect(trackerURL.hasPrefix("http://127.0.0.1:") && trackerURL.hasSuffix("/metrics"), "\(trackerURL)")

        #expect(try alice.run("share data.bin data.mtorrent").hasPrefix("SUCCESS:"))
        let summary = try bob.run("get data.mtorrent copy.bin")
        #expect(summary.hasPrefix("SUCCESS:"), "\(summary)")
        // Plain HTTP at the tracker's TLS port: a handshake that fails, counted as such.
        _ = try Command.system("curl", ["--silent", "--max-time", "5", "http://\(tracker.address)/"], in: folder)
        let pieces = try MTorrent.load(from: ca.folder.file("data.mtorrent"), trust: try ca.trust()).0.layout.pieceCount

        let seeder = Scrape(try scrape(aliceURL))
        let getter = Scrape(try scrape(bobURL))
        let trackerScrape = Scrape(try scrape(trackerURL))

        #expect(getter.sum("minitorrent_peer_downloaded_bytes_total") == Double(fileSize))
        #expect(seeder.sum("minitorrent_peer_uploaded_bytes_total") == Double(fileSize))
        #expect(getter.sum("minitorrent_peer_pieces_verified_total") == Double(pieces))
        #expect(getter.sum("minitorrent_peer_pieces_failed_total") == 0)
        #expect(getter.sum("minitorrent_peer_bans_total") == 0)
        #expect(getter.sum("minitorrent_peer_downloads_in_progress") == 0)
        #expect(getter.sum("minitorrent_peer_trackers_reachable") == 1, "one of the two trackers is reachable")
        #expect(getter.sum("minitorrent_peer_crl_number") == Double(try ca.trust().revocationList.number))
        #expect(getter.sum("minitorrent_peer_crl_expiry_seconds") > 0)
        #expect(getter.sum("minitorrent_peer_certificate_expiry_seconds") > 29 * 86400)
        #expect(seeder.sum("minitorrent_tls_handshakes_total", #"outcome="ok""#) >= 2, "the tracker, and bob's download")

        #expect(trackerScrape.sum("minitorrent_tracker_requests_total", #"operation="share""#, #"outcome="ok""#) >= 1)
        #expect(trackerScrape.sum("minitorrent_tracker_requests_total", #"operation="get""#, #"outcome="ok""#) >= 1)
        #expect(trackerScrape.sum("minitorrent_tls_handshakes_total", #"outcome="ok""#) >= 2)
        #expect(trackerScrape.sum("minitorrent_tls_handshakes_total", #"outcome="failed""#) >= 1, "the plain HTTP request")
        #expect(trackerScrape.sum("minitorrent_tracker_registry_files") == 1)
        #expect(trackerScrape.sum("minitorrent_tracker_registry_holders") >= 1)
        #expect(trackerScrape.sum("minitorrent_tracker_journal_bytes") > 0)
        #expect(trackerScrape.sum("minitorrent_tracker_acl_denials_total") == 0)

        #expect(alice.finish() == 0)
        #expect(bob.finish() == 0)
    }

    @Test func theTrackerCountsACLDenialsAndQuotaRefusalsByKind() throws {
        try "allow share,get peer alice\n".write(toFile: ca.folder.file("acl"), atomically: true, encoding: .utf8)
        try "max-files-per-peer = 1\nmetrics = 127.0.0.1:0\n".write(toFile: ca.folder.file("tracker.conf"), atomically: true, encoding: .utf8)
        try Data(repeating: 7, count: 100_000).write(to: URL(fileURLWithPath: ca.folder.file("other.bin")))
        let tracker = try TrackerProcess(folder: folder, arguments: [
            "--pki", ca.layout.folder, "--name", "tracker1", "--data", ca.folder.file("tracker-data"), "--acl", ca.folder.file("acl"),
            "--config", ca.folder.file("tracker.conf"),
        ])
        defer { tracker.stop() }
        let trackerURL = try #require(tracker.metricsURL, "the config file's metrics key turns them on")
        let alice = try peer("alice", tracker)
        let bob = try peer("bob", tracker)
        #expect(try alice.run("share data.bin data.mtorrent").hasPrefix("SUCCESS:"))
        _ = try alice.run("share other.bin other.mtorrent")
        let denied = try bob.run("get data.mtorrent copy.bin")
        #expect(denied.hasPrefix("FAILURE:"), "\(denied)")

        let scrape = Scrape(try scrape(trackerURL))
        #expect(scrape.sum("minitorrent_tracker_acl_denials_total", #"action="get""#) >= 1)
        #expect(scrape.sum("minitorrent_tracker_requests_total", #"operation="get""#, #"outcome="ACCESS_DENIED""#) >= 1)
        #expect(scrape.sum("minitorrent_tracker_quota_refusals_total", #"quota="files""#) >= 1)
        #expect(scrape.sum("minitorrent_tracker_requests_total", #"operation="share""#, #"outcome="QUOTA""#) >= 1)
        #expect(scrape.sum("minitorrent_tracker_requests_total", #"operation="share""#, #"outcome="ok""#) >= 1)
        #expect(scrape.sum("minitorrent_tracker_registry_files") == 1, "the refused share is not recorded")
        _ = alice.finish()
        #expect(bob.finish() == 1, "bob's get failed")
    }
}

/// One answer of a `/metrics` endpoint in the text exposition format.
private struct Scrape {
    /// Each sample line's series (name and labels) and value.
    let samples: [(series: String, value: Double)]

    init(_ text: String) {
        samples = text.split(separator: "\n").compactMap { line in
            guard !line.hasPrefix("#"), let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { return nil }
            return (String(line[..<space]), value)
        }
    }

    /// The sum of the samples of metric `name` whose labels include every one of `labels`.
    func sum(_ name: String, _ labels: String...) -> Double {
        samples.filter { sample in
            sample.series.prefix { $0 != "{" } == name && labels.allSatisfy { sample.series.contains($0) }
        }.reduce(0) { $0 + $1.value }
    }
}
