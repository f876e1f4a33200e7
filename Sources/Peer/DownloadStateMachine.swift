import Logging
import MTorrentFormat
import NIOCore
import PKI
import Pieces
import Wire

/// Every decision of one download, as a pure state machine: events come in (a holder connected,
/// a frame arrived, a piece verified, the clock ticked), actions go out (connect, send, close,
/// hash and write, finish, fail), and time is an input. It owns the picker's bookkeeping, every
/// holder's standing and every connection's queue, so each piece of state lives here once; the
/// ``Swarm`` runs the actions on sockets and a thread pool and feeds back what happened.
///
/// Policy: up to ``PeerLimits/peersPerDownload`` holders at once, asked again for new ones soon
/// after the start and then every ``PeerLimits/discoveryInterval`` seconds;
/// ``PeerLimits/requestsPerPeer`` block requests outstanding per connection; pieces chosen rarest
/// first with an endgame, seeds spared while partial holders deliver. A holder that sends a piece
/// failing its signed hash, or anything it was not asked for, is banned for this download and its
/// pieces go back to the others. A connection that leaves requests unanswered for
/// ``PeerLimits/stallTimeout`` seconds is dropped; a holder whose connections bring nothing
/// ``attemptsPerHolder`` times is given up. The download fails when no piece arrived for four stall
/// timeouts, or when no holder is left to ask.
package struct DownloadStateMachine<Random: RandomNumberGenerator> {
    /// One connection, as the executor names it.
    package typealias ConnectionID = Int

    /// What happened.
    package enum Event {
        /// The download begins with the holders the trackers listed.
        case started([HolderRecord])
        /// The trackers were asked again (``Action/discover``) and listed these.
        case holdersDiscovered([HolderRecord])
        /// A connection finished its TLS handshake; the holder proved to be `identity`.
        case connected(ConnectionID, identity: VerifiedIdentity)
        case frame(ConnectionID, PeerFrame)
        /// A connection ended or could not be opened; `problem` says why, if the machine did not close it.
        case closed(ConnectionID, problem: String?)
        /// A piece handed out in ``Action/hashAndWrite(piece:data:connection:)`` matched its hash and is written.
        case pieceVerified(piece: Int, connection: ConnectionID)
        /// A piece failed its signed hash; nothing was written.
        case pieceFailed(piece: Int, connection: ConnectionID)
        /// The download cannot go on: writing a verified piece failed (a full disk), or the peer is stopping.
        case aborted(CommandFailure)
        /// A new revocation list is in force: connections to holders it revokes end.
        case trustChanged(TrustStore)
        case tick
    }

    /// What to do.
    package enum Action {
        case connect(ConnectionID, HolderRecord)
        /// Send these frames on the connection, then flush.
        case send(ConnectionID, [PeerFrame])
        case close(ConnectionID)
        /// Hash a whole piece against its signed hash on the thread pool, and write it if it
        /// matches; answer with ``Event/pieceVerified(piece:connection:)`` or ``Event/pieceFailed(piece:connection:)``.
        case hashAndWrite(piece: Int, data: ByteBuffer, connection: ConnectionID)
        /// Ask the trackers for holders; answer with ``Event/holdersDiscovered(_:)``.
        case discover
        /// A piece is verified and written: others may fetch it from here now.
        case stored(piece: Int)
        case progress(verified: UInt64, total: UInt64)
        /// A holder is banned for this download (the peer counts bans).
        case banned
        case log(Logger.Level, Logger.Message, Logger.Metadata)
        /// Every piece is verified and written; ``summary`` says how it went.
        case finish
        case fail(CommandFailure)
    }

    /// What a finished download did, for its result line.
    struct Summary {
        var fetchedBytes: UInt64
        var resumedPieces: Int
        var piecesByHolder: [String: Int]
        var banned: [String]
    }

    /// How often the executor tells the machine the time (``Event/tick``: stalls, discovery).
    package static var tickInterval: TimeAmount { .milliseconds(250) }
    /// Connection attempts to one holder that bring nothing before it is given up.
    static var attemptsPerHolder: Int { 3 }
    /// How recently a partial holder must have delivered a piece for seeds to be spared.
    static var sparingWindow: TimeAmount { .seconds(2) }
    /// The first wait before asking the trackers again; it doubles up to the discovery interval.
    static var firstDiscovery: TimeAmount { .milliseconds(250) }

    private let layout: PieceLayout
    private let file: FileID
    private let limits: PeerLimits
    private let blockLength: Int
    /// Received pieces waiting to be hashed and written, in bytes, before no new piece is started.
    private let processingLimit: Int
    private var random: Random

    private var picker: PiecePicker
    private var holders: [String: HolderState] = [:]
    private var connections: [ConnectionID: ConnectionState] = [:]
    private var nextConnectionID = 0
    /// Pieces being hashed and written, by piece and connection: who sent them and how long they are.
    private var verifying: [VerificationKey: Verification] = [:]
    private var processingBytes = 0
    private var verifiedBytes: UInt64 = 0
    private let resumedBytes: UInt64
    private let resumedPieces: Int
    private var piecesByHolder: [String: Int] = [:]
    private var banned: [String] = []
    private var lastProgress: NIODeadline
    private var lastPieceFromPartialHolder = NIODeadline.uptimeNanoseconds(0)
    private var discovering = false
    private var nextDiscovery: NIODeadline
    private var discoveryDelay = Self.firstDiscovery
    /// Whether the download still runs (it ends once, by finishing or failing).
    package private(set) var isRunning = true

    /// What the machine knows of one holder (one certificate at one address).
    private struct HolderState {
        let record: HolderRecord
        var connection: ConnectionID?
        var fruitlessAttempts = 0
        var retryAt = NIODeadline.uptimeNanoseconds(0)
        /// Banned or refused for good: never contacted again in this download.
        var excluded = false
        /// Why the last connection to it ended, for the result line if the download fails.
        var lastEnd: String?
    }

    /// One connection to a holder, from the connect action until it is closed.
    private struct ConnectionState {
        let holder: HolderRecord
        /// Who the holder proved to be (known once the handshake completed and matched the tracker's record).
        var identity: VerifiedIdentity?
        /// What the holder has (known once its bitfield arrived).
        var bits: Bitfield?
        /// Blocks chosen for this connection and not yet requested, in order.
        var queue: [Block] = []
        /// Blocks requested and not yet received, in the order the holder answers them.
        var outstanding: [Block] = []
        /// Pieces this connection is fetching (queued, requested, assembling or being verified).
        var assigned: Set<Int> = []
        /// The blocks received so far of the piece being assembled.
        var assembling: (piece: Int, data: ByteBuffer)?
        /// When the holder last answered (or when the first outstanding request went out).
        var lastHeard: NIODeadline
        /// Why the machine closed it.
        var endReason: String?
    }

    private struct VerificationKey: Hashable {
        let piece: Int
        let connection: ConnectionID
    }

    private struct Verification {
        let holder: HolderRecord
        let length: Int
        /// The holder lacked some pieces when it sent this one.
        let fromPartialHolder: Bool
    }

    package init(layout: PieceLayout, file: FileID, resumed: Bitfield, limits: PeerLimits, random: Random, now: NIODeadline) {
        self.layout = layout
        self.file = file
        self.limits = limits
        self.random = random
        blockLength = min(layout.pieceSize, 256 * 1024)
        processingLimit = max(8 * 1024 * 1024, layout.pieceSize)
        picker = PiecePicker(have: resumed)
        resumedBytes = (0..<layout.pieceCount).filter(resumed.contains).reduce(0) { $0 + UInt64(layout.length(ofPiece: $1)) }
        resumedPieces = resumed.heldCount
        verifiedBytes = resumedBytes
        lastProgress = now
        nextDiscovery = now + Self.firstDiscovery
    }

    /// Bytes verified so far (resumed ones included), of the whole file.
    var verified: (bytes: UInt64, of: UInt64) { (verifiedBytes, layout.fileSize) }

    /// Holders connected now that proved who they are.
    var connectedHolders: Int { connections.values.count { $0.identity != nil && $0.endReason == nil } }

    /// What the download did so far (complete once it finished).
    var summary: Summary {
        Summary(fetchedBytes: verifiedBytes - resumedBytes, resumedPieces: resumedPieces, piecesByHolder: piecesByHolder, banned: banned)
    }

    /// Takes one event at `now`; returns what to do, in order.
    package mutating func handle(_ event: Event, now: NIODeadline) -> [Action] {
        guard isRunning else { return [] }
        var actions: [Action] = []
        switch event {
        case .started(let records):
            actions.append(.progress(verified: verifiedBytes, total: layout.fileSize))
            learn(records)
            if finishIfComplete(&actions) { return actions }
            connectMore(now: now, &actions)
        case .holdersDiscovered(let records):
            discovering = false
            learn(records)
            connectMore(now: now, &actions)
        case .connected(let id, let identity):
            connected(id, identity: identity, now: now, &actions)
        case .frame(let id, let frame):
            received(frame, on: id, now: now, &actions)
        case .closed(let id, let problem):
            ended(id, problem: problem, now: now, &actions)
        case .pieceVerified(let piece, let id):
            guard let verification = finishVerifying(piece, from: id) else { break }
            completed(piece, verification, connection: id, now: now, &actions)
            if finishIfComplete(&actions) { return actions }
            fillAll(now: now, &actions)
        case .pieceFailed(let piece, let id):
            guard let verification = finishVerifying(piece, from: id) else { break }
            picker.release(piece, from: id)
            ban(verification.holder, connection: connections[id] != nil ? id : nil, piece: piece, "sent a piece that fails its signed hash", &actions)
            // Another connection may have completed the piece meanwhile, and this was the last one pending.
            if finishIfComplete(&actions) { return actions }
            fillAll(now: now, &actions)
        case .aborted(let failure):
            fail(failure, &actions)
            return actions
        case .trustChanged(let trust):
            closeRevoked(by: trust, &actions)
        case .tick:
            tick(now: now, &actions)
            if !isRunning { return actions }
        }
        giveUpIfHopeless(&actions)
        return actions
    }

    // MARK: - Holders and connections

    /// A holder is one certificate at one address.
    private static func key(of record: HolderRecord) -> String {
        "\(record.address) \(record.fingerprint)"
    }

    private mutating func learn(_ records: [HolderRecord]) {
        for record in records {
            let key = Self.key(of: record)
            if holders[key] == nil { holders[key] = HolderState(record: record) }
        }
    }

    private var openCount: Int { connections.count }

    private mutating func connectMore(now: NIODeadline, _ actions: inout [Action]) {
        // In random order: with more holders than connections, downloaders that all took the same
        // first ones (sorted) would crowd a few holders and leave the others idle.
        let eligible = holders.filter { !$0.value.excluded && $0.value.connection == nil && $0.value.retryAt <= now }.map(\.key).sorted()
            .shuffled(using: &random)
        for key in eligible where openCount < limits.peersPerDownload {
            guard let record = holders[key]?.record, TrackerAddress(record.address) != nil else {
                holders[key]?.excluded = true
                continue
            }
            let id = nextConnectionID
            nextConnectionID += 1
            holders[key]?.connection = id
            connections[id] = ConnectionState(holder: record, lastHeard: now)
            actions.append(.connect(id, record))
        }
    }

    private mutating func connected(_ id: ConnectionID, identity: VerifiedIdentity, now: NIODeadline, _ actions: inout [Action]) {
        guard let connection = connections[id] else { return }
        guard identity.fingerprint == connection.holder.fingerprint, identity.name == connection.holder.name else {
            exclude(connection.holder)
            close(id, because: "it proved to be '\(identity.name)', not '\(connection.holder.name)' as the tracker recorded", &actions)
            return
        }
        connections[id]?.identity = identity
        connections[id]?.lastHeard = now
        actions.append(.send(id, [.hello(file: file)]))
    }

    private mutating func closeRevoked(by trust: TrustStore, _ actions: inout [Action]) {
        for (id, connection) in connections.sorted(by: { $0.key < $1.key }) {
            guard let identity = connection.identity, trust.revokes(identity) else { continue }
            exclude(connection.holder)
            actions.append(.log(.warning, "closing the connection to a holder whose certificate is revoked", [
                "peer": "\(identity.name)", "fingerprint": "\(identity.fingerprint.prefix(16))", "address": "\(connection.holder.address)",
            ]))
            close(id, because: "its certificate is revoked", &actions)
        }
    }

    private mutating func close(_ id: ConnectionID, because reason: String, _ actions: inout [Action]) {
        guard connections[id] != nil else { return }
        if connections[id]?.endReason == nil { connections[id]?.endReason = reason }
        actions.append(.close(id))
    }

    private mutating func ended(_ id: ConnectionID, problem: String?, now: NIODeadline, _ actions: inout [Action]) {
        guard let connection = connections.removeValue(forKey: id) else { return }
        if let bits = connection.bits { picker.holderLeft(bits) }
        for piece in connection.assigned { picker.release(piece, from: id) }
        let reason = connection.endReason ?? problem
        let key = Self.key(of: connection.holder)
        if var state = holders[key], state.connection == id {
            state.connection = nil
            state.fruitlessAttempts += 1
            state.lastEnd = reason
            state.retryAt = now + .seconds(Int64(state.fruitlessAttempts))
            if state.fruitlessAttempts >= Self.attemptsPerHolder { state.excluded = true }
            holders[key] = state
        }
        actions.append(.log(.info, "connection to a holder ended", [
            "peer": "\(connection.holder.name)", "address": "\(connection.holder.address)", "reason": "\(reason ?? "closed by the holder")",
        ]))
        fillAll(now: now, &actions)
        connectMore(now: now, &actions)
    }

    private mutating func exclude(_ holder: HolderRecord) {
        holders[Self.key(of: holder)]?.excluded = true
    }

    private mutating func ban(_ holder: HolderRecord, connection id: ConnectionID?, piece: Int, _ reason: String, _ actions: inout [Action]) {
        exclude(holder)
        if !banned.contains(holder.name) { banned.append(holder.name) }
        actions.append(.banned)
        actions.append(.log(.error, "banned for this download: \(reason)", [
            "peer": "\(holder.name)", "fingerprint": "\(holder.fingerprint.prefix(16))", "address": "\(holder.address)", "piece": "\(piece)",
        ]))
        if let id { close(id, because: "banned: \(reason)", &actions) }
    }

    // MARK: - Frames

    private mutating func received(_ frame: PeerFrame, on id: ConnectionID, now: NIODeadline, _ actions: inout [Action]) {
        guard let connection = connections[id], connection.identity != nil, connection.endReason == nil else { return }
        let count = layout.pieceCount
        switch frame {
        case .bitfield(let bytes):
            guard connection.bits == nil, let bits = Bitfield(bytes: bytes, count: count) else {
                return ban(connection.holder, connection: id, piece: -1, "sent a bitfield that does not fit the file", &actions)
            }
            connections[id]?.bits = bits
            picker.holderJoined(bits)
            fill(id, now: now, &actions)
        case .have(let piece):
            guard var bits = connection.bits, Int(piece) < count else {
                return ban(connection.holder, connection: id, piece: Int(piece), "sent a HAVE out of place", &actions)
            }
            if bits.insert(Int(piece)) { picker.holderGot(Int(piece), nowComplete: bits.isComplete) }
            connections[id]?.bits = bits
            fill(id, now: now, &actions)
        case .piece(let piece, let offset, let data):
            receiveBlock(piece: Int(piece), offset: Int(offset), data: data, on: id, now: now, &actions)
        case .reject(let code, let message):
            // A busy holder, or one that does not have the file yet, may be asked again later.
            if code != .busy, code != .fileNotFound { exclude(connection.holder) }
            close(id, because: "refused: \(code) \(message)", &actions)
        case .hello, .request:
            ban(connection.holder, connection: id, piece: -1, "sent a frame only downloaders send", &actions)
        }
    }

    private mutating func receiveBlock(piece: Int, offset: Int, data: ByteBuffer, on id: ConnectionID, now: NIODeadline, _ actions: inout [Action]) {
        guard var connection = connections[id] else { return }
        guard let expected = connection.outstanding.first, expected.piece == piece, expected.offset == offset, expected.length == data.readableBytes else {
            return ban(connection.holder, connection: id, piece: piece, "sent something other than the block asked for", &actions)
        }
        connection.outstanding.removeFirst()
        connection.lastHeard = now
        var buffer = data
        if connection.assembling?.piece != piece || offset == 0 {
            connection.assembling = (piece, ByteBuffer())
        }
        connection.assembling!.data.writeBuffer(&buffer)
        var whole: ByteBuffer?
        if connection.assembling!.data.readableBytes == layout.length(ofPiece: piece) {
            whole = connection.assembling!.data
            connection.assembling = nil
        }
        connections[id] = connection
        if let whole { verify(piece, whole, from: id, &actions) }
        fill(id, now: now, &actions)
    }

    // MARK: - Requests

    /// Seeds are spared while partial holders keep delivering: a piece one of them has is left to
    /// it. When none delivered for ``sparingWindow``, seeds are asked for anything again.
    private func partialHoldersDeliver(now: NIODeadline) -> Bool {
        now - lastPieceFromPartialHolder < Self.sparingWindow
    }

    private mutating func fillAll(now: NIODeadline, _ actions: inout [Action]) {
        for id in connections.keys.sorted() { fill(id, now: now, &actions) }
    }

    private mutating func fill(_ id: ConnectionID, now: NIODeadline, _ actions: inout [Action]) {
        guard isRunning, var connection = connections[id], connection.endReason == nil, let bits = connection.bits else { return }
        let wasIdle = connection.outstanding.isEmpty
        var requests: [PeerFrame] = []
        while connection.outstanding.count < limits.requestsPerPeer {
            if connection.queue.isEmpty {
                guard processingBytes < processingLimit,
                      let piece = picker.next(for: id, holding: bits, sparingSeeds: partialHoldersDeliver(now: now), random: &random)
                else { break }
                connection.assigned.insert(piece)
                let length = layout.length(ofPiece: piece)
                for offset in stride(from: 0, to: length, by: blockLength) {
                    connection.queue.append(Block(piece: piece, offset: offset, length: min(blockLength, length - offset)))
                }
            }
            let block = connection.queue.removeFirst()
            connection.outstanding.append(block)
            requests.append(.request(piece: UInt32(block.piece), offset: UInt32(block.offset), length: UInt32(block.length)))
        }
        if !requests.isEmpty {
            if wasIdle { connection.lastHeard = now }
            actions.append(.send(id, requests))
        }
        connections[id] = connection
    }

    // MARK: - Verification

    private mutating func verify(_ piece: Int, _ data: ByteBuffer, from id: ConnectionID, _ actions: inout [Action]) {
        guard let connection = connections[id], !picker.have.contains(piece), connection.assigned.contains(piece) else { return }
        let key = VerificationKey(piece: piece, connection: id)
        guard verifying[key] == nil else { return }
        processingBytes += data.readableBytes
        verifying[key] = Verification(holder: connection.holder, length: data.readableBytes, fromPartialHolder: connection.bits?.isComplete == false)
        actions.append(.hashAndWrite(piece: piece, data: data, connection: id))
    }

    /// Ends the bookkeeping of one verification; nil if none was running.
    private mutating func finishVerifying(_ piece: Int, from id: ConnectionID) -> Verification? {
        guard let verification = verifying.removeValue(forKey: VerificationKey(piece: piece, connection: id)) else { return nil }
        processingBytes -= verification.length
        connections[id]?.assigned.remove(piece)
        return verification
    }

    private mutating func completed(_ piece: Int, _ verification: Verification, connection id: ConnectionID, now: NIODeadline, _ actions: inout [Action]) {
        guard !picker.have.contains(piece) else {
            picker.release(piece, from: id)
            return
        }
        for other in picker.completed(piece) where other != id {
            connections[other]?.assigned.remove(piece)
            connections[other]?.queue.removeAll { $0.piece == piece }
        }
        verifiedBytes += UInt64(verification.length)
        piecesByHolder[verification.holder.name, default: 0] += 1
        if verification.fromPartialHolder { lastPieceFromPartialHolder = now }
        holders[Self.key(of: verification.holder)]?.fruitlessAttempts = 0
        lastProgress = now
        actions.append(.stored(piece: piece))
        actions.append(.progress(verified: verifiedBytes, total: layout.fileSize))
    }

    // MARK: - Time and the end

    private mutating func tick(now: NIODeadline, _ actions: inout [Action]) {
        let stall = TimeAmount.seconds(limits.stallTimeout)
        for (id, connection) in connections.sorted(by: { $0.key < $1.key })
        where connection.endReason == nil && (!connection.outstanding.isEmpty || connection.bits == nil) && now - connection.lastHeard > stall {
            close(id, because: "stalled: no answer for \(limits.stallTimeout) s", &actions)
        }
        if now - lastProgress > stall * 4 {
            fail(CommandFailure(.downloadFailed, "no holder sent a missing piece for \(limits.stallTimeout * 4) s; \(missingSummary)"), &actions)
            return
        }
        if now >= nextDiscovery {
            discoveryDelay = min(discoveryDelay * 2, .seconds(limits.discoveryInterval))
            nextDiscovery = now + discoveryDelay
            if !discovering, openCount < limits.peersPerDownload {
                discovering = true
                actions.append(.discover)
            }
        }
        connectMore(now: now, &actions)
    }

    private var missingSummary: String {
        "\(layout.pieceCount - picker.have.heldCount) of \(layout.pieceCount) pieces are still missing"
    }

    /// Fails the download when nobody is left to ask: no connection open or opening, no holder
    /// that may be asked again, no piece being verified and no answer from the trackers awaited.
    private mutating func giveUpIfHopeless(_ actions: inout [Action]) {
        guard isRunning, connections.isEmpty, verifying.isEmpty, !discovering, holders.values.allSatisfy(\.excluded) else { return }
        let tried = holders.values.map { state in
            "\(state.record.name) at \(state.record.address)" + (state.lastEnd.map { ": \($0)" } ?? "")
        }.sorted()
        var text = "\(missingSummary) and no holder can supply them (tried \(tried.joined(separator: "; "))"
        if !banned.isEmpty { text += "; banned for corrupt data: \(banned.joined(separator: ", "))" }
        fail(CommandFailure(.downloadFailed, text + ")"), &actions)
    }

    private mutating func finishIfComplete(_ actions: inout [Action]) -> Bool {
        guard picker.isComplete, verifying.isEmpty else { return false }
        end(&actions)
        actions.append(.finish)
        return true
    }

    private mutating func fail(_ failure: CommandFailure, _ actions: inout [Action]) {
        end(&actions)
        actions.append(.fail(failure))
    }

    private mutating func end(_ actions: inout [Action]) {
        isRunning = false
        for id in connections.keys.sorted() { close(id, because: "the download ended", &actions) }
    }
}
