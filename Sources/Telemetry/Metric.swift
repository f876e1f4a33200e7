import CoreMetrics

/// A counter a MiniTorrent program publishes: its name under `minitorrent_` and the names of its
/// labels, whose values a caller gives in that order. Until ``Telemetry/bootstrap()`` runs (only
/// with `--metrics`), counting does nothing. Label values come from short fixed lists (outcomes,
/// failure codes, operations), never from peers or files, so the number of series stays small.
public struct CounterMetric: Sendable {
    public let name: String
    public let labelNames: [String]

    init(_ name: String, labels: [String] = []) {
        self.name = name
        labelNames = labels
    }

    /// Adds `amount` to the series of `labelValues` (one per label name, in order).
    public func increment(by amount: Int = 1, _ labelValues: String...) {
        Counter(label: name, dimensions: dimensions(labelNames, labelValues)).increment(by: amount)
    }
}

/// A gauge a MiniTorrent program publishes: a value that goes up and down, set when it changes or
/// when `/metrics` is scraped.
public struct GaugeMetric: Sendable {
    public let name: String
    public let labelNames: [String]

    init(_ name: String, labels: [String] = []) {
        self.name = name
        labelNames = labels
    }

    /// Sets the series of `labelValues` to `value`.
    public func set(_ value: Double, _ labelValues: String...) {
        Meter(label: name, dimensions: dimensions(labelNames, labelValues)).set(value)
    }

    /// Adds 1 to the series of `labelValues`.
    public func increment(_ labelValues: String...) {
        Meter(label: name, dimensions: dimensions(labelNames, labelValues)).increment()
    }

    /// Takes 1 from the series of `labelValues`.
    public func decrement(_ labelValues: String...) {
        Meter(label: name, dimensions: dimensions(labelNames, labelValues)).decrement()
    }
}

private func dimensions(_ names: [String], _ values: [String]) -> [(String, String)] {
    precondition(names.count == values.count, "a metric needs one value for each of its labels \(names)")
    return Array(zip(names, values))
}

// docs/METRICS.md describes every metric below; keep the two in step.

extension CounterMetric {
    /// TLS handshakes, by `outcome` (ok, refused, failed) and `reason` (none, or the TLS or
    /// certificate validation code): both programs publish it.
    public static let handshakes = CounterMetric("minitorrent_tls_handshakes_total", labels: ["outcome", "reason"])

    /// Connections the tracker closed before serving them, by `reason`.
    public static let trackerConnectionsRefused = CounterMetric("minitorrent_tracker_connections_refused_total", labels: ["reason"])
    /// Requests answered, by `operation` and `outcome` (ok or the failure code).
    public static let trackerRequests = CounterMetric("minitorrent_tracker_requests_total", labels: ["operation", "outcome"])
    /// Requests the access control list denied, by the `action` asked for.
    public static let trackerACLDenials = CounterMetric("minitorrent_tracker_acl_denials_total", labels: ["action"])
    /// Requests refused over a per-certificate quota, by `quota` (request-rate or files).
    public static let trackerQuotaRefusals = CounterMetric("minitorrent_tracker_quota_refusals_total", labels: ["quota"])
    /// Rewrites of the registry's journal.
    public static let trackerJournalCompactions = CounterMetric("minitorrent_tracker_journal_compactions_total")

    /// File bytes handed to other peers' connections.
    public static let peerUploadedBytes = CounterMetric("minitorrent_peer_uploaded_bytes_total")
    /// File bytes received from other peers, verified or not.
    public static let peerDownloadedBytes = CounterMetric("minitorrent_peer_downloaded_bytes_total")
    /// Downloaded pieces that matched their signed hash and were written.
    public static let peerPiecesVerified = CounterMetric("minitorrent_peer_pieces_verified_total")
    /// Downloaded pieces that failed their signed hash.
    public static let peerPiecesFailed = CounterMetric("minitorrent_peer_pieces_failed_total")
    /// Holders banned from a download (a bad piece or a frame out of place).
    public static let peerBans = CounterMetric("minitorrent_peer_bans_total")
}

extension GaugeMetric {
    /// Tracker connections open now, authenticated or still in their handshake.
    public static let trackerConnectionsOpen = GaugeMetric("minitorrent_tracker_connections_open")
    /// Files the tracker's registry knows.
    public static let trackerRegistryFiles = GaugeMetric("minitorrent_tracker_registry_files")
    /// Holder entries in the tracker's registry.
    public static let trackerRegistryHolders = GaugeMetric("minitorrent_tracker_registry_holders")
    /// Size of the registry's journal file.
    public static let trackerJournalBytes = GaugeMetric("minitorrent_tracker_journal_bytes")

    /// Peer connections open now, by `direction`: in (served) or out (downloading).
    public static let peerConnectionsOpen = GaugeMetric("minitorrent_peer_connections_open", labels: ["direction"])
    /// Downloads running now.
    public static let peerDownloadsInProgress = GaugeMetric("minitorrent_peer_downloads_in_progress")
    /// Trackers that answered the last announcement and so hold every share of the peer.
    public static let peerTrackersReachable = GaugeMetric("minitorrent_peer_trackers_reachable")
    /// Number of the revocation list in force.
    public static let peerCRLNumber = GaugeMetric("minitorrent_peer_crl_number")
    /// Seconds until the revocation list in force is due to be replaced (negative once overdue).
    public static let peerCRLExpirySeconds = GaugeMetric("minitorrent_peer_crl_expiry_seconds")
    /// Seconds until the peer's own certificate expires.
    public static let peerCertificateExpirySeconds = GaugeMetric("minitorrent_peer_certificate_expiry_seconds")
}
