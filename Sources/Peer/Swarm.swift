import Foundation
import Logging
import MTorrentFormat
import NIOCore
import NIOPosix
import PKI
import Pieces
import Telemetry
import TLS
import Wire

/// What a finished download did.
public struct DownloadReport: Sendable {
    public let bytes: UInt64
    public let seconds: Double
    public let pieceCount: Int
    /// Bytes fetched in this run (the file's size less what was resumed).
    public let fetchedBytes: UInt64
    /// Pieces found intact in the `.part` of an earlier attempt (not fetched again).
    public let resumedPieces: Int
    /// Pieces fetched now, by the name of the holder that sent them.
    public let piecesByHolder: [String: Int]
    public let bannedPeers: [String]

    public var fetchedPieces: Int { piecesByHolder.values.reduce(0, +) }
}

/// How far a running download is, for `status`.
public struct DownloadProgress: Sendable {
    public let name: String
    public let file: FileID
    public let totalBytes: UInt64
    public let verifiedBytes: UInt64
    public let connectedHolders: Int
    /// Bytes fetched in this run per second since it started.
    public let bytesPerSecond: Double

    public var fraction: Double { totalBytes == 0 ? 1 : Double(verifiedBytes) / Double(totalBytes) }
}

/// Runs one download: it executes what its ``DownloadStateMachine`` decides — opens and closes
/// mutual-TLS connections to holders, sends frames, hashes and writes pieces on the thread pool,
/// asks the trackers for holders — and feeds back what happened, with the time. All of it lives
/// on one event loop.
final class Swarm: @unchecked Sendable {
    /// Seconds a connection to a holder may take to open.
    static let connectTimeoutSeconds: Int64 = 5

    typealias Machine = DownloadStateMachine<SystemRandomNumberGenerator>

    /// The file's name, as the `.mtorrent` gives it.
    let name: String
    private let torrent: MTorrent
    private let part: PartFile
    private let share: PartialShare
    private let tls: TLSContext
    private let loop: EventLoop
    private let threadPool: NIOThreadPool
    private let logger: Logger
    private let progress: (@Sendable (UInt64, UInt64) -> Void)?
    private let discover: @Sendable () async -> [HolderRecord]

    private var machine: Machine
    /// The channel handler of each connection, once its channel exists.
    private var connections: [Int: SwarmConnection] = [:]
    /// Connections the machine closed before their channel existed.
    private var closeOnArrival: Set<Int> = []
    private var timer: RepeatedTask?
    private var outcome: EventLoopPromise<Void>?
    private var startedAt = NIODeadline.now()

    init(
        name: String, torrent: MTorrent, part: PartFile, share: PartialShare, tls: TLSContext, loop: EventLoop, threadPool: NIOThreadPool,
        limits: PeerLimits, logger: Logger, progress: (@Sendable (UInt64, UInt64) -> Void)?,
        discover: @escaping @Sendable () async -> [HolderRecord]
    ) {
        self.name = name
        self.torrent = torrent
        self.part = part
        self.share = share
        self.tls = tls
        self.loop = loop
        self.threadPool = threadPool
        self.logger = logger
        self.progress = progress
        self.discover = discover
        machine = Machine(
            layout: torrent.layout, file: share.file, resumed: part.resumed, limits: limits, random: SystemRandomNumberGenerator(), now: .now()
        )
    }

    /// Downloads every missing piece; returns when all are verified and written.
    func run(holders initial: [HolderRecord]) async throws(CommandFailure) -> DownloadReport {
        let started = Date()
        let promise = loop.makePromise(of: Void.self)
        loop.execute { [self] in
            outcome = promise
            startedAt = .now()
            timer = loop.scheduleRepeatedTask(initialDelay: Machine.tickInterval, delay: Machine.tickInterval) { [self] _ in handle(.tick) }
            handle(.started(initial))
        }
        do {
            return try await promise.futureResult.map { [self] in
                let summary = machine.summary
                return DownloadReport(
                    bytes: torrent.layout.fileSize, seconds: Date().timeIntervalSince(started), pieceCount: torrent.layout.pieceCount,
                    fetchedBytes: summary.fetchedBytes, resumedPieces: summary.resumedPieces, piecesByHolder: summary.piecesByHolder,
                    bannedPeers: summary.banned
                )
            }.get()
        } catch {
            throw (error as? CommandFailure) ?? CommandFailure(.downloadFailed, "\(error)")
        }
    }

    /// How far the download is now (asked on its event loop).
    func progress() async -> DownloadProgress {
        let snapshot = try? await loop.submit { [self] in
            let seconds = Double((NIODeadline.now() - startedAt).nanoseconds) / 1e9
            return DownloadProgress(
                name: name, file: share.file, totalBytes: machine.verified.of, verifiedBytes: machine.verified.bytes,
                connectedHolders: machine.connectedHolders, bytesPerSecond: seconds > 0 ? Double(machine.summary.fetchedBytes) / seconds : 0
            )
        }.get()
        return snapshot ?? DownloadProgress(name: name, file: share.file, totalBytes: 0, verifiedBytes: 0, connectedHolders: 0, bytesPerSecond: 0)
    }

    /// Ends the download with `failure` (the peer is stopping); what is verified stays in the `.part`.
    func abort(_ failure: CommandFailure) {
        loop.execute { [self] in handle(.aborted(failure)) }
    }

    /// Closes, within the swarm's event loop, every connection to a holder whose certificate
    /// `trust` revokes, and never contacts that holder again in this download.
    func closeRevoked(by trust: TrustStore) {
        loop.execute { [self] in handle(.trustChanged(trust)) }
    }

    /// Tells the machine what happened, now, and carries out what it decides. On the loop only.
    func handle(_ event: Machine.Event) {
        loop.preconditionInEventLoop()
        for action in machine.handle(event, now: .now()) { run(action) }
    }

    private func run(_ action: Machine.Action) {
        switch action {
        case .connect(let id, let record):
            connect(id, to: record)
        case .send(let id, let frames):
            connections[id]?.send(frames)
        case .close(let id):
            if let connection = connections[id] { connection.close() } else { closeOnArrival.insert(id) }
        case .hashAndWrite(let piece, let data, let id):
            hashAndWrite(piece, data, from: id)
        case .discover:
            let discover = self.discover
            Task {
                let found = await discover()
                self.loop.execute { self.handle(.holdersDiscovered(found)) }
            }
        case .stored(let piece):
            share.add(piece)
        case .progress(let verified, let total):
            progress?(verified, total)
        case .banned:
            CounterMetric.peerBans.increment()
        case .log(let level, let message, let metadata):
            logger.log(level: level, message, metadata: metadata)
        case .finish:
            end()?.succeed()
        case .fail(let failure):
            end()?.fail(failure)
        }
    }

    private func connect(_ id: Int, to record: HolderRecord) {
        guard let address = TrackerAddress(record.address) else {
            handle(.closed(id, problem: "its address \(record.address) is not ip:port"))
            return
        }
        let host = address.host.hasPrefix("[") ? String(address.host.dropFirst().dropLast()) : address.host
        let tls = self.tls
        ClientBootstrap(group: loop)
            .connectTimeout(.seconds(Self.connectTimeoutSeconds))
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    let connection = SwarmConnection(id: id, swarm: self)
                    connections[id] = connection
                    try channel.pipeline.syncOperations.addHandlers([
                        TLSHandler(context: tls, side: .client(dialedHost: host)),
                        ByteToMessageHandler(PeerFrameDecoder()),
                        MessageToByteHandler(PeerFrameEncoder()),
                        connection,
                    ])
                    if closeOnArrival.remove(id) != nil || !machine.isRunning { channel.close(promise: nil) }
                }
            }
            .connect(host: host, port: Int(address.port))
            .whenFailure { [self] error in
                connections[id] = nil
                closeOnArrival.remove(id)
                handle(.closed(id, problem: ConnectionProblem.cause(of: error, timeout: Self.connectTimeoutSeconds).predicate))
            }
    }

    /// A connection's channel ended; `problem` is what broke it, if anything did.
    func connectionEnded(_ id: Int, problem: String?) {
        connections[id] = nil
        handle(.closed(id, problem: problem))
    }

    /// Hashes a received piece on the thread pool and writes it only if it matches.
    private func hashAndWrite(_ piece: Int, _ data: ByteBuffer, from id: Int) {
        let expected = torrent.pieceHashes[piece]
        let offset = torrent.layout.offset(ofPiece: piece)
        let part = self.part
        threadPool.runIfActive(eventLoop: loop) { () throws(CommandFailure) -> Bool in
            let digest = SHA256Digest()
            data.withUnsafeReadableBytes { digest.update($0) }
            guard digest.finish() == expected else { return false }
            try data.withUnsafeReadableBytes { bytes throws(CommandFailure) in try part.write(bytes, at: offset) }
            return true
        }.whenComplete { [self] result in
            switch result {
            case .success(true):
                CounterMetric.peerPiecesVerified.increment()
                handle(.pieceVerified(piece: piece, connection: id))
            case .success(false):
                CounterMetric.peerPiecesFailed.increment()
                handle(.pieceFailed(piece: piece, connection: id))
            case .failure(let error): handle(.aborted((error as? CommandFailure) ?? CommandFailure(.downloadFailed, "\(error)")))
            }
        }
    }

    /// Stops the clock and hands back the promise to complete (once).
    private func end() -> EventLoopPromise<Void>? {
        timer?.cancel()
        timer = nil
        defer { outcome = nil }
        return outcome
    }
}
