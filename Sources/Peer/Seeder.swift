import Logging
import NIOCore
import NIOPosix
import PKI
import NIOConcurrencyHelpers
import Telemetry
import TLS
import Wire

/// Serves the files in the share index, and the verified pieces of downloads in progress, to other
/// peers over mutual TLS: a client names a file (HELLO), gets the bitfield (then a HAVE for every
/// piece verified later), and asks for blocks. File reads run on a thread pool, never on an event
/// loop; a shared file whose size or modification time changed since it was shared is not served.
/// Upload slots, queued requests per connection and the upload rate are limited (``PeerLimits``).
/// Every authenticated connection is listed, so that `remove` and a new CRL can close it.
public final class Seeder: Sendable {
    private let index: ShareIndex
    let partials: PartialShares
    private let tls: TLSContext
    /// The CA and CRL in force, as the handshakes see them.
    private let trust: TrustSource
    private let threadPool: NIOThreadPool
    private let logger: Logger
    let limits: PeerLimits
    let pacer: UploadPacer
    private let counters = NIOLockedValueBox<Counters>(Counters())
    private let uploads = NIOLockedValueBox<[ObjectIdentifier: LiveUpload]>([:])
    /// The super-seeding offers of each shared file that has connections.
    private let offers = NIOLockedValueBox<[FileID: SharedOffers]>([:])

    private struct Counters {
        var connections = 0
        var sessionsByPeer: [String: Int] = [:]
        var uploaded: [FileID: UInt64] = [:]
    }

    /// A connection to this server whose client proved its certificate, and the file it asked for.
    private struct LiveUpload {
        let identity: VerifiedIdentity
        let channel: Channel
        var file: FileID?
    }

    init(
        index: ShareIndex, partials: PartialShares, tls: TLSContext, trust: TrustSource, threadPool: NIOThreadPool, limits: PeerLimits, logger: Logger
    ) {
        self.index = index
        self.partials = partials
        self.tls = tls
        self.trust = trust
        self.threadPool = threadPool
        self.limits = limits
        self.logger = logger
        pacer = UploadPacer(bytesPerSecond: limits.uploadBytesPerSecond)
    }

    /// Binds and serves; returns the bound address.
    func start(host: String, port: Int, group: EventLoopGroup) throws -> Channel {
        try ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] child in
                child.eventLoop.makeCompletedFuture {
                    guard admitConnection() else {
                        logger.warning("refusing a connection: the connection limit is reached", metadata: ["limit": "\(limits.maximumConnections)"])
                        child.close(promise: nil)
                        return
                    }
                    GaugeMetric.peerConnectionsOpen.increment("in")
                    child.closeFuture.whenComplete { [self] _ in
                        counters.withLockedValue { $0.connections -= 1 }
                        GaugeMetric.peerConnectionsOpen.decrement("in")
                    }
                    try child.pipeline.syncOperations.addHandlers([
                        TLSHandler(context: tls, side: .server),
                        IdleStateHandler(readTimeout: .seconds(limits.idleTimeout)),
                        ByteToMessageHandler(PeerFrameDecoder()),
                        MessageToByteHandler(PeerFrameEncoder()),
                        SeedSession(seeder: self, index: index, threadPool: threadPool, logger: logger),
                    ])
                }
            }
            .bind(host: host, port: port).wait()
    }

    /// Records a connection once its client's certificate is verified. A handshake judged by the
    /// CA and CRL in force just before a reload is caught here, as the reload's sweep may have missed it.
    func register(_ channel: Channel, identity: VerifiedIdentity) {
        uploads.withLockedValue { $0[ObjectIdentifier(channel)] = LiveUpload(identity: identity, channel: channel) }
        if trust.current.revokes(identity) { _ = closeRevoked(by: trust.current) }
    }

    /// Records the file a connection is served; closes it if `remove` withdrew the file meanwhile.
    func record(_ file: FileID, servedOn channel: Channel) {
        uploads.withLockedValue { $0[ObjectIdentifier(channel)]?.file = file }
        if index.entry(for: file) == nil, partials.share(for: file) == nil { _ = stopServing(file) }
    }

    /// Forgets a connection that has closed.
    func unregister(_ channel: Channel) {
        _ = uploads.withLockedValue { $0.removeValue(forKey: ObjectIdentifier(channel)) }
    }

    /// Closes every connection serving `file`, complete or in progress (the file is no longer
    /// shared); returns how many.
    func stopServing(_ file: FileID) -> Int {
        let closing = uploads.withLockedValue { $0.values.filter { $0.file == file } }
        for upload in closing {
            logger.info("closing an upload: the file is no longer shared", metadata: ["peer": "\(upload.identity.name)", "file": "\(file.short)"])
            upload.channel.close(promise: nil)
        }
        return closing.count
    }

    /// Closes every connection whose client certificate `trust` revokes; returns how many.
    func closeRevoked(by trust: TrustStore) -> Int {
        let closing = uploads.withLockedValue { $0.values.filter { trust.revokes($0.identity) } }
        for upload in closing {
            logger.warning("closing an upload to a revoked certificate", metadata: [
                "peer": "\(upload.identity.name)", "fingerprint": "\(upload.identity.fingerprint.prefix(16))", "file": "\(upload.file?.short ?? "none yet")",
            ])
            upload.channel.close(promise: nil)
        }
        return closing.count
    }

    /// The offers of a shared file, made when its first connection arrives; nil without super-seeding.
    func offers(for file: FileID, pieceCount: Int, pieceSize: Int) -> SharedOffers? {
        guard limits.superSeedWindowBytes > 0 else { return nil }
        return offers.withLockedValue { offers in
            if let existing = offers[file] { return existing }
            let made = SharedOffers(pieceCount: pieceCount, pieceSize: pieceSize, windowBytes: limits.superSeedWindowBytes, copies: limits.superSeedCopies)
            offers[file] = made
            return made
        }
    }

    /// A connection of `file` ended; the offers go when its last one did, so the next swarm starts afresh.
    func closeOffers(of file: FileID, connection: PieceOffers.Connection) {
        offers.withLockedValue { offers in
            if offers[file]?.close(connection) == true { offers[file] = nil }
        }
    }

    /// Bytes uploaded per file since this peer started.
    var uploaded: [FileID: UInt64] { counters.withLockedValue { $0.uploaded } }

    /// Counts bytes handed to a live connection.
    func countUpload(_ bytes: Int, of file: FileID) {
        counters.withLockedValue { $0.uploaded[file, default: 0] += UInt64(bytes) }
        CounterMetric.peerUploadedBytes.increment(by: bytes)
    }

    private func admitConnection() -> Bool {
        counters.withLockedValue { counters in
            guard counters.connections < limits.maximumConnections else { return false }
            counters.connections += 1
            return true
        }
    }

    /// Takes an upload slot for `peer` (a certificate fingerprint), or says why none is free.
    func takeSlot(for peer: String) -> String? {
        counters.withLockedValue { counters in
            let all = counters.sessionsByPeer.values.reduce(0, +)
            guard all < limits.uploadSlots else { return "all \(limits.uploadSlots) upload slots are in use; try again later" }
            guard counters.sessionsByPeer[peer, default: 0] < limits.uploadsPerPeer else {
                return "you hold \(limits.uploadsPerPeer) upload slots already; try again later"
            }
            counters.sessionsByPeer[peer, default: 0] += 1
            return nil
        }
    }

    func releaseSlot(for peer: String) {
        counters.withLockedValue { counters in
            counters.sessionsByPeer[peer, default: 1] -= 1
            if counters.sessionsByPeer[peer] == 0 { counters.sessionsByPeer[peer] = nil }
        }
    }
}
