import NIOCore
import NIOConcurrencyHelpers
import TLS

/// The resource limits of a peer, as a downloader and as a server (config/peer.conf.example
/// documents each key and its default).
public struct PeerLimits: Sendable, Equatable {
    /// Holders one download connects to at once (`peers-per-download`).
    public var peersPerDownload = 16
    /// Block requests kept outstanding on one download connection (`requests-per-peer`).
    public var requestsPerPeer = 8
    /// Connections this peer serves at once, over all files (`upload-slots`).
    public var uploadSlots = 32
    /// Of those, connections one certificate may hold (`uploads-per-peer`).
    public var uploadsPerPeer = 4
    /// Connections to this peer's server at once, before or after the handshake (`max-connections`).
    public var maximumConnections = 256
    /// Seconds a TLS handshake with this peer's server may take (`handshake-timeout`).
    public var handshakeTimeout: Int64 = TLSConfiguration.defaultHandshakeTimeoutSeconds
    /// Seconds a connection to this peer's server may stay without a request (`idle-timeout`).
    public var idleTimeout: Int64 = 120
    /// Requests one client may have waiting at this peer before it is cut off (`queued-requests`).
    public var queuedRequestsPerConnection = 64
    /// Upload bytes per second over all connections; 0 means no limit (`upload-limit`).
    public var uploadBytesPerSecond: UInt64 = 0
    /// Seconds a download connection may keep requests unanswered before it is dropped (`stall-timeout`).
    public var stallTimeout: Int64 = 15
    /// Seconds between asks at the trackers for new holders during a download (`discovery-interval`).
    public var discoveryInterval: Int64 = 2
    /// Bytes of a shared file offered to one downloader at a time until every piece has left this
    /// peer once (super-seeding); 0 offers every piece at once (`super-seed-window`, in KiB).
    public var superSeedWindowBytes = 4 * 1024 * 1024
    /// Copies of each piece a seed hands out through those offers before it offers every piece
    /// (`super-seed-copies`).
    public var superSeedCopies = 1

    public init() {}
}

/// Spreads uploads over time so that, over all connections together, no more than the configured
/// bytes per second leave this peer: a block is charged to a shared timeline only when it is about
/// to be sent, so a connection that ends while it waits has taken nothing from the others.
final class UploadPacer: Sendable {
    private let bytesPerSecond: UInt64
    private let nextFree = NIOLockedValueBox<NIODeadline>(.uptimeNanoseconds(0))

    init(bytesPerSecond: UInt64) {
        self.bytesPerSecond = bytesPerSecond
    }

    /// Zero when `bytes` may be sent now, and then they are charged; otherwise how long to wait
    /// before asking again, and nothing is charged.
    func waitBeforeSending(_ bytes: Int) -> TimeAmount {
        guard bytesPerSecond > 0 else { return .zero }
        let now = NIODeadline.now()
        let duration = TimeAmount.nanoseconds(Int64(Double(bytes) / Double(bytesPerSecond) * 1e9))
        return nextFree.withLockedValue { next in
            guard next <= now else { return next - now }
            next = now + duration
            return .zero
        }
    }
}
