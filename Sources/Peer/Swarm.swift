import Foundation
import Logging
import MTorrentFormat
import NIOCore
import NIOPosix
import PKI
import Pieces
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

/// Downloads one file from every holder at once. It connects to up to
/// ``PeerLimits/peersPerDownload`` holders (asking the trackers again for new ones every
/// ``PeerLimits/discoveryInterval`` seconds), keeps ``PeerLimits/requestsPerPeer`` block requests
/// outstanding on each connection, and lets a ``PiecePicker`` choose pieces rarest first with an
/// endgame. Every piece is hashed against the signed hash before it is written; a holder that
/// sends a bad piece, or anything it was not asked for, is disconnected and banned for this
/// download, and its pieces go back to the others. A connection that leaves requests unanswered
/// for ``PeerLimits/stallTimeout`` seconds is dropped and its pieces re-requested elsewhere.
///
/// All state lives on one event loop; connections are opened on that loop.
final class Swarm: @unchecked Sendable {
    /// Connection attempts to one holder that bring nothing before it is given up.
    static let attemptsPerHolder = 3
    /// How recently a partial holder must have delivered a piece for seeds to be spared.
    static let sparingWindow = TimeAmount.seconds(2)

    private let torrent: MTorrent
    private let part: PartFile
    private let share: PartialShare
    private let tls: TLSContext
    private let loop: EventLoop
    private let threadPool: NIOThreadPool
    private let limits: PeerLimits
    private let logger: Logger
    private let progress: (@Sendable (UInt64, UInt64) -> Void)?
    private let discover: @Sendable () async -> [HolderRecord]
    private let blockLength: Int
    /// Received pieces waiting to be hashed and written, in bytes, before no new piece is started.
    private let processingLimit: Int

    private var picker: PiecePicker
    private var random = SystemRandomNumberGenerator()
    private var holders: [String: HolderState] = [:]
    private var connections: [Int: SwarmConnection] = [:]
    private var connecting: [Int: String] = [:]
    private var nextConnectionID = 0
    private var processingBytes = 0
    private var verifiedBytes: UInt64 = 0
    private var resumedBytes: UInt64 = 0
    private var piecesByHolder: [String: Int] = [:]
    private var banned: [String] = []
    private var lastProgress = NIODeadline.now()
    private var lastPieceFromPartialHolder = NIODeadline.uptimeNanoseconds(0)
    private var timers: [RepeatedTask] = []
    private var discoveryTimer: Scheduled<Void>?
    private var outcome: EventLoopPromise<Void>?
    private var discovering = false

    /// What the swarm knows of one holder.
    /// Seconds a connection to a holder may take to open.
    static let connectTimeoutSeconds: Int64 = 5

    private struct HolderState {
        let record: HolderRecord
        var connection: Int?
        var fruitlessAttempts = 0
        var retryAt = NIODeadline.uptimeNanoseconds(0)
        /// Banned or refused for good: never contacted again in this download.
        var excluded = false
        /// Why the last connection to it ended, for the result line if the download fails.
        var lastEnd: String?
    }

    init(
        torrent: MTorrent, part: PartFile, share: PartialShare, tls: TLSContext, loop: EventLoop, threadPool: NIOThreadPool,
        limits: PeerLimits, logger: Logger, progress: (@Sendable (UInt64, UInt64) -> Void)?,
        discover: @escaping @Sendable () async -> [HolderRecord]
    ) {
        self.torrent = torrent
        self.part = part
        self.share = share
        self.tls = tls
        self.loop = loop
        self.threadPool = threadPool
        self.limits = limits
        self.logger = logger
        self.progress = progress
        self.discover = discover
        blockLength = min(torrent.layout.pieceSize, 256 * 1024)
        processingLimit = max(8 * 1024 * 1024, torrent.layout.pieceSize)
        picker = PiecePicker(have: part.resumed)
        for index in 0..<torrent.layout.pieceCount where part.resumed.contains(index) {
            resumedBytes += UInt64(torrent.layout.length(ofPiece: index))
        }
        verifiedBytes = resumedBytes
    }

    /// Downloads every missing piece; returns when all are verified and written.
    func run(holders initial: [HolderRecord]) async throws(CommandFailure) -> DownloadReport {
        let started = Date()
        let promise = loop.makePromise(of: Void.self)
        loop.execute { self.begin(initial, promise) }
        do {
            return try await promise.futureResult.map { [self] in
                DownloadReport(
                    bytes: torrent.layout.fileSize, seconds: Date().timeIntervalSince(started), pieceCount: torrent.layout.pieceCount,
                    fetchedBytes: verifiedBytes - resumedBytes, resumedPieces: part.resumed.heldCount, piecesByHolder: piecesByHolder,
                    bannedPeers: banned
                )
            }.get()
        } catch {
            throw (error as? CommandFailure) ?? CommandFailure(.downloadFailed, "\(error)")
        }
    }

    // MARK: - Holders and connections

    private func begin(_ initial: [HolderRecord], _ promise: EventLoopPromise<Void>) {
        outcome = promise
        progress?(verifiedBytes, torrent.layout.fileSize)
        learn(initial)
        if finishIfComplete() { return }
        timers.append(loop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { [self] _ in tick() })
        scheduleDiscovery(after: .milliseconds(250))
        connectMore()
        giveUpIfHopeless()
    }

    /// A holder is one certificate at one address.
    private static func key(of record: HolderRecord) -> String {
        "\(record.address) \(record.fingerprint)"
    }

    private func learn(_ records: [HolderRecord]) {
        for record in records {
            let key = Self.key(of: record)
            if holders[key] == nil { holders[key] = HolderState(record: record) }
        }
    }

    /// Asks the trackers again soon after the start, when other downloaders that started at the
    /// same moment have just registered, then less often: 0.25 s, 0.5 s, 1 s … up to the interval.
    private func scheduleDiscovery(after delay: TimeAmount) {
        let interval = TimeAmount.seconds(limits.discoveryInterval)
        discoveryTimer = loop.scheduleTask(in: delay) { [self] in
            rediscover()
            if outcome != nil { scheduleDiscovery(after: min(delay * 2, interval)) }
        }
    }

    private func rediscover() {
        guard outcome != nil, !discovering, connections.count + connecting.count < limits.peersPerDownload else { return }
        discovering = true
        let discover = self.discover
        Task {
            let found = await discover()
            self.loop.execute {
                self.discovering = false
                self.learn(found)
                self.connectMore()
                self.giveUpIfHopeless()
            }
        }
    }

    private func connectMore() {
        let now = NIODeadline.now()
        let eligible = holders.filter { !$0.value.excluded && $0.value.connection == nil && $0.value.retryAt <= now }
            .map(\.key).sorted()
        for key in eligible where outcome != nil && connections.count + connecting.count < limits.peersPerDownload {
            connect(key)
        }
    }

    private func connect(_ key: String) {
        guard let record = holders[key]?.record, let address = TrackerAddress(record.address) else {
            holders[key]?.excluded = true
            return
        }
        let id = nextConnectionID
        nextConnectionID += 1
        holders[key]?.connection = id
        connecting[id] = key
        let host = address.host.hasPrefix("[") ? String(address.host.dropFirst().dropLast()) : address.host
        let tls = self.tls
        ClientBootstrap(group: loop)
            .connectTimeout(.seconds(Self.connectTimeoutSeconds))
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    let connection = SwarmConnection(id: id, holder: record, swarm: self)
                    connections[id] = connection
                    try channel.pipeline.syncOperations.addHandlers([
                        TLSHandler(context: tls, side: .client(dialedHost: host)),
                        ByteToMessageHandler(PeerFrameDecoder()),
                        MessageToByteHandler(PeerFrameEncoder()),
                        connection,
                    ])
                }
            }
            .connect(host: host, port: Int(address.port))
            .whenFailure { [self] error in
                let problem = ConnectionProblem.cause(of: error, timeout: Self.connectTimeoutSeconds).predicate
                connections[id]?.endReason = connections[id]?.endReason ?? problem
                if connections[id] == nil { connections[id] = SwarmConnection(id: id, holder: record, swarm: self) }
                connectionEnded(id)
            }
    }

    func connection(_ connection: SwarmConnection, provedIdentity identity: VerifiedIdentity) {
        connecting[connection.id] = nil
        guard identity.fingerprint == connection.holder.fingerprint, identity.name == connection.holder.name else {
            exclude(connection.holder)
            connection.close(because: "it proved to be '\(identity.name)', not '\(connection.holder.name)' as the tracker recorded")
            return
        }
        connection.identity = identity
        connection.send(.hello(file: share.file))
        connection.flush()
    }

    /// Closes, within the swarm's event loop, every connection to a holder whose certificate
    /// `trust` revokes, and never contacts that holder again in this download.
    func closeRevoked(by trust: TrustStore) {
        loop.execute { [self] in
            for connection in connections.values {
                guard let identity = connection.identity, trust.revokes(identity) else { continue }
                exclude(connection.holder)
                logger.warning("closing the connection to a holder whose certificate is revoked", metadata: [
                    "peer": "\(identity.name)", "fingerprint": "\(identity.fingerprint)", "address": "\(connection.holder.address)",
                    "file": "\(share.file)",
                ])
                connection.close(because: "its certificate is revoked")
            }
        }
    }

    func connectionEnded(_ id: Int) {
        connecting[id] = nil
        guard let connection = connections.removeValue(forKey: id) else { return }
        if let bits = connection.bits { picker.holderLeft(bits) }
        for piece in connection.assigned { picker.release(piece, from: id) }
        let key = Self.key(of: connection.holder)
        if var state = holders[key], state.connection == id {
            state.connection = nil
            state.fruitlessAttempts += 1
            state.lastEnd = connection.endReason
            state.retryAt = .now() + .seconds(Int64(state.fruitlessAttempts))
            if state.fruitlessAttempts >= Self.attemptsPerHolder { state.excluded = true }
            holders[key] = state
        }
        if outcome != nil {
            logger.info("connection to a holder ended", metadata: [
                "peer": "\(connection.holder.name)", "address": "\(connection.holder.address)", "file": "\(share.file)",
                "reason": "\(connection.endReason ?? "closed by the holder")",
            ])
        }
        fillAll()
        connectMore()
        giveUpIfHopeless()
    }

    private func exclude(_ holder: HolderRecord) {
        holders[Self.key(of: holder)]?.excluded = true
    }

    private func ban(_ connection: SwarmConnection, piece: Int, _ reason: String) {
        exclude(connection.holder)
        if !banned.contains(connection.holder.name) { banned.append(connection.holder.name) }
        logger.error("banned for this download: \(reason)", metadata: [
            "peer": "\(connection.holder.name)", "fingerprint": "\(connection.holder.fingerprint)",
            "address": "\(connection.holder.address)", "piece": "\(piece)", "file": "\(share.file)",
        ])
        connection.close(because: "banned: \(reason)")
    }

    // MARK: - Frames

    func connection(_ connection: SwarmConnection, received frame: PeerFrame) {
        let count = torrent.layout.pieceCount
        switch frame {
        case .bitfield(let bytes):
            guard connection.bits == nil, let bits = Bitfield(bytes: bytes, count: count) else {
                return ban(connection, piece: -1, "sent a bitfield that does not fit the file")
            }
            connection.bits = bits
            picker.holderJoined(bits)
            fill(connection)
        case .have(let piece):
            guard var bits = connection.bits, Int(piece) < count else { return ban(connection, piece: Int(piece), "sent a HAVE out of place") }
            if bits.insert(Int(piece)) { picker.holderGot(Int(piece), nowComplete: bits.isComplete) }
            connection.bits = bits
            fill(connection)
        case .piece(let piece, let offset, let data):
            receiveBlock(piece: Int(piece), offset: Int(offset), data: data, from: connection)
        case .reject(let code, let message):
            // A busy holder, or one that does not have the file yet, may be asked again later.
            if code != .busy, code != .fileNotFound { exclude(connection.holder) }
            connection.close(because: "refused: \(code) \(message)")
        case .hello, .request:
            ban(connection, piece: -1, "sent a frame only downloaders send")
        }
    }

    private func receiveBlock(piece: Int, offset: Int, data: ByteBuffer, from connection: SwarmConnection) {
        guard let expected = connection.outstanding.first, expected.piece == piece, expected.offset == offset,
              expected.length == data.readableBytes
        else { return ban(connection, piece: piece, "sent something other than the block asked for") }
        connection.outstanding.removeFirst()
        connection.lastHeard = .now()
        var buffer = data
        if connection.assembling?.piece != piece || offset == 0 {
            connection.assembling = (piece, ByteBuffer())
        }
        connection.assembling!.data.writeBuffer(&buffer)
        if connection.assembling!.data.readableBytes == torrent.layout.length(ofPiece: piece) {
            let whole = connection.assembling!.data
            connection.assembling = nil
            verify(piece, whole, from: connection)
        }
        fill(connection)
    }

    // MARK: - Requests

    /// Seeds are spared while partial holders keep delivering: a piece one of them has is left to
    /// it. When none delivered for ``sparingWindow``, seeds are asked for anything again.
    private var partialHoldersDeliver: Bool {
        NIODeadline.now() - lastPieceFromPartialHolder < Self.sparingWindow
    }

    private func fillAll() {
        for connection in connections.values { fill(connection) }
    }

    private func fill(_ connection: SwarmConnection) {
        guard outcome != nil, let bits = connection.bits else { return }
        let wasIdle = connection.outstanding.isEmpty
        var sent = false
        while connection.outstanding.count < limits.requestsPerPeer {
            if connection.queue.isEmpty {
                guard processingBytes < processingLimit,
                      let piece = picker.next(for: connection.id, holding: bits, sparingSeeds: partialHoldersDeliver, random: &random)
                else { break }
                connection.assigned.insert(piece)
                let length = torrent.layout.length(ofPiece: piece)
                for offset in stride(from: 0, to: length, by: blockLength) {
                    connection.queue.append(Block(piece: piece, offset: offset, length: min(blockLength, length - offset)))
                }
            }
            let block = connection.queue.removeFirst()
            connection.outstanding.append(block)
            connection.send(.request(piece: UInt32(block.piece), offset: UInt32(block.offset), length: UInt32(block.length)))
            sent = true
        }
        if sent {
            if wasIdle { connection.lastHeard = .now() }
            connection.flush()
        }
    }

    // MARK: - Verification

    /// Hashes a received piece on the thread pool and writes it only if it matches.
    private func verify(_ piece: Int, _ data: ByteBuffer, from connection: SwarmConnection) {
        guard !picker.have.contains(piece), connection.assigned.contains(piece) else { return }
        let length = data.readableBytes
        processingBytes += length
        let expected = torrent.pieceHashes[piece]
        let offset = torrent.layout.offset(ofPiece: piece)
        let part = self.part
        let source = NIOLoopBound(connection, eventLoop: loop)
        threadPool.runIfActive(eventLoop: loop) { () throws(CommandFailure) -> Bool in
            let digest = SHA256Digest()
            data.withUnsafeReadableBytes { digest.update($0) }
            guard digest.finish() == expected else { return false }
            try data.withUnsafeReadableBytes { bytes throws(CommandFailure) in try part.write(bytes, at: offset) }
            return true
        }.whenComplete { [self] result in
            let connection = source.value
            processingBytes -= length
            connection.assigned.remove(piece)
            switch result {
            case .success(true):
                completed(piece, length: length, from: connection)
            case .success(false):
                picker.release(piece, from: connection.id)
                ban(connection, piece: piece, "sent a piece that fails its signed hash")
            case .failure(let error):
                fail((error as? CommandFailure) ?? CommandFailure(.downloadFailed, "\(error)"))
                return
            }
            if finishIfComplete() { return }
            fillAll()
            giveUpIfHopeless()
        }
    }

    private func completed(_ piece: Int, length: Int, from connection: SwarmConnection) {
        guard !picker.have.contains(piece) else {
            picker.release(piece, from: connection.id)
            return
        }
        for other in picker.completed(piece) where other != connection.id {
            guard let duplicate = connections[other] else { continue }
            duplicate.assigned.remove(piece)
            duplicate.queue.removeAll { $0.piece == piece }
        }
        share.add(piece)
        verifiedBytes += UInt64(length)
        piecesByHolder[connection.holder.name, default: 0] += 1
        if connection.bits?.isComplete == false { lastPieceFromPartialHolder = .now() }
        let key = Self.key(of: connection.holder)
        holders[key]?.fruitlessAttempts = 0
        lastProgress = .now()
        progress?(verifiedBytes, torrent.layout.fileSize)
    }

    // MARK: - Timers and the end

    private func tick() {
        let now = NIODeadline.now()
        let stall = TimeAmount.seconds(limits.stallTimeout)
        for connection in connections.values where (!connection.outstanding.isEmpty || connection.bits == nil) && now - connection.lastHeard > stall {
            connection.close(because: "stalled: no answer for \(limits.stallTimeout) s")
        }
        if now - lastProgress > stall * 4 {
            fail(CommandFailure(.downloadFailed, "no holder sent a missing piece for \(limits.stallTimeout * 4) s; \(missingSummary)"))
            return
        }
        connectMore()
        giveUpIfHopeless()
    }

    private var missingSummary: String {
        "\(torrent.layout.pieceCount - picker.have.heldCount) of \(torrent.layout.pieceCount) pieces are still missing"
    }

    /// Fails the download when nobody is left to ask: no connection open or opening, no holder
    /// that may be asked again, no piece being verified and no answer from the trackers awaited.
    private func giveUpIfHopeless() {
        guard outcome != nil, connections.isEmpty, connecting.isEmpty, processingBytes == 0, !discovering else { return }
        guard holders.values.allSatisfy(\.excluded) else { return }
        let tried = holders.values.map { state in
            "\(state.record.name) at \(state.record.address)" + (state.lastEnd.map { ": \($0)" } ?? "")
        }.sorted()
        var text = "\(missingSummary) and no holder can supply them (tried \(tried.joined(separator: "; "))"
        if !banned.isEmpty { text += "; banned for corrupt data: \(banned.joined(separator: ", "))" }
        fail(CommandFailure(.downloadFailed, text + ")"))
    }

    private func finishIfComplete() -> Bool {
        guard picker.isComplete, processingBytes == 0, let outcome else { return false }
        end()
        outcome.succeed()
        return true
    }

    private func fail(_ failure: CommandFailure) {
        guard let outcome else { return }
        end()
        outcome.fail(failure)
    }

    private func end() {
        outcome = nil
        for timer in timers { timer.cancel() }
        timers = []
        discoveryTimer?.cancel()
        for connection in connections.values { connection.close(because: "the download ended") }
    }
}
