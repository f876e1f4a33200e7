import MTorrentFormat
import NIOCore
import PKI
import PKITesting
import Peer
import Pieces
import Wire

/// A whole swarm in one process, in virtual time: every leecher is the production
/// ``DownloadStateMachine``, every host serves as the production seeder does (a leecher serves
/// its verified pieces and announces new ones; a host with the whole file super-seeds with
/// ``PieceOffers`` and ``OfferWatch``; upload slots as ``PeerLimits`` sets them), and bytes move
/// through a ``FluidNetwork``. No sockets, no TLS, no files: a handshake is two round trips, a
/// block is a slice of one shared zero buffer, and a piece verifies after `hashBytesPerSecond`
/// (instantly by default).
///
/// Each connection's holder-to-downloader direction is one FIFO of frames, as a socket is:
/// HAVE and bitfield frames take no bandwidth but wait behind the blocks ahead of them, blocks
/// are sent one after the other as one flow. Frames from the downloader (HELLO, REQUEST) take
/// one latency. The tracker answers after one round trip with up to
/// ``TrackerResponse/maximumHolders`` holders picked at random, as the registry does.
public final class SwarmSimulation {
    typealias Machine = DownloadStateMachine<SplitMix>

    let scenario: Scenario
    let layout: PieceLayout
    private let file = FileID(bytes: Array(repeating: 0x5A, count: 32))!
    /// Every host presents the same certificate: the simulation has no use for distinct ones
    /// (holders are told apart by address, upload slots are counted per host).
    private let identity: VerifiedIdentity
    let zeros: ByteBuffer
    var random: SplitMix

    var network: FluidNetwork
    private var queue = MinHeap<Scheduled>()
    private var sequence: UInt64 = 0
    var now: Int64 = 0
    private var reallocationDue = false
    private var lastReallocation: Int64 = .min / 2
    var hosts: [Host] = []
    private var addresses: [String: Int] = [:]
    var connections: [Connection] = []
    var flowOwner: [Int: Int] = [:]
    private var events = 0
    private var reallocations = 0
    /// Leechers still expected to finish.
    private var waitingFor = 0

    /// Host 0 is the seeder, hosts 1… the leechers.
    struct Host {
        let record: HolderRecord
        var alive = false
        var isLeecher: Bool
        var machine: Machine?
        var have: Bitfield
        var joinAt: Int64 = 0
        var leaveAt: Int64?
        var finishedAt: Int64?
        var failed = false
        /// Super-seeding offers while it has the whole file and connections to serve.
        var offers: PieceOffers?
        var offerConnections: [PieceOffers.Connection: Int] = [:]
        var nextOfferConnection = 0
        var slotsByPeer: [Int: Int] = [:]
        var slotsInUse = 0
        /// Machine connection number → connection index.
        var outgoing: [Int: Int] = [:]
        /// Connections it serves.
        var serving: Set<Int> = []
        var uploaded: Double = 0
        /// Whether it must finish for the run to end.
        var counted: Bool

        var isComplete: Bool { have.isComplete }
    }

    struct Connection {
        let downloader: Int
        let holder: Int
        let local: Int
        var open = true
        var session: Session?
        /// Frames from the holder, in order; the first block is the one on the wire.
        var outbox = CircularBuffer<PeerFrame>()
        var blocksQueued = 0
        var flow: Int?
    }

    /// The holder's side of a connection once it accepted HELLO.
    struct Session {
        /// Serving a download in progress: its new pieces are announced.
        var partial: Bool
        var offer: PieceOffers.Connection?
        var watch = OfferWatch()
        var recentRequests = 0
        var slotTaken: Bool
    }

    enum Event {
        case join(Int)
        case leave(Int)
        case tick(Int)
        /// The tracker's answer reaches `host`; it lists the holders registered by then.
        case holdersListed(Int, first: Bool)
        case handshake(Int)
        case toHolder(Int, PeerFrame)
        case toDownloader(Int, PeerFrame)
        case closedByDownloader(Int)
        case closedUnderDownloader(Int, String)
        /// The machine closed its connection: it hears of it as from a socket.
        case closedByMachine(host: Int, connection: Int)
        case flowDone(flow: Int, version: Int)
        case reallocate
        case verified(host: Int, piece: Int, connection: Int)
        case offerLook(Int)
    }

    private struct Scheduled: Comparable {
        let time: Int64
        let sequence: UInt64
        let event: Event

        static func < (a: Scheduled, b: Scheduled) -> Bool { (a.time, a.sequence) < (b.time, b.sequence) }
        static func == (a: Scheduled, b: Scheduled) -> Bool { (a.time, a.sequence) == (b.time, b.sequence) }
    }

    public init(_ scenario: Scenario) throws {
        self.scenario = scenario
        layout = try PieceLayout(fileSize: scenario.fileBytes, pieceSize: scenario.resolvedPieceSize)
        let ca = try TestAuthority(name: "Simulation CA")
        identity = try ca.trust().validate(try ca.peer("host").certificate, as: .peer)
        random = SplitMix(seed: scenario.seed)
        zeros = ByteBuffer(repeating: 0, count: min(layout.pieceSize, 256 * 1024))

        let lateJoiners = Int((scenario.churn * Double(scenario.leechers)).rounded())
        let total = scenario.leechers + lateJoiners
        let ups = scenario.leecherUpBits + Array(repeating: scenario.upBits, count: lateJoiners)
        let scale = scenario.payloadFraction / 8
        network = FluidNetwork(
            up: [scenario.seedUpBits * scale] + ups.map { $0 * scale },
            down: [scenario.seedDownBits * scale] + Array(repeating: scenario.downBits * scale, count: total)
        )
        for index in 0...total {
            let address = "10.\(index / 65536).\(index / 256 % 256).\(index % 256):7000"
            addresses[address] = index
            let record = HolderRecord(address: address, name: identity.name, fingerprint: identity.fingerprint)
            let have = index == 0 ? Bitfield.full(count: layout.pieceCount) : Bitfield(count: layout.pieceCount)
            hosts.append(Host(record: record, isLeecher: index > 0, have: have, counted: index > 0))
        }
        let bound = scenario.lowerBound
        let leavers = Array((1...max(scenario.leechers, 1)).prefix(scenario.leechers).shuffled(using: &random).prefix(lateJoiners))
        for leaver in leavers {
            hosts[leaver].leaveAt = Self.nanoseconds(Double.random(in: 0.1...0.9, using: &random) * bound)
            hosts[leaver].counted = false
        }
        for late in stride(from: scenario.leechers + 1, through: total, by: 1) {
            hosts[late].joinAt = Self.nanoseconds(Double.random(in: 0...0.5, using: &random) * bound)
        }
    }

    private static func nanoseconds(_ seconds: Double) -> Int64 { Int64(seconds * 1e9) }

    /// Runs until every leecher that stays has finished or failed, or `limitSeconds` of virtual time passed.
    public func run(limitSeconds: Double) -> Outcome {
        for index in hosts.indices {
            schedule(.join(index), at: hosts[index].joinAt)
            if let leaveAt = hosts[index].leaveAt { schedule(.leave(index), at: leaveAt) }
        }
        waitingFor = hosts.count { $0.counted }
        let limit = Self.nanoseconds(limitSeconds)
        while waitingFor > 0, let next = queue.pop(), next.time <= limit {
            now = next.time
            events += 1
            handle(next.event)
            if network.isDirty, !reallocationDue {
                reallocationDue = true
                schedule(.reallocate, at: max(now, lastReallocation + scenario.reallocationNanoseconds))
            }
        }
        let counted = hosts.filter(\.counted)
        let completions = counted.compactMap { $0.finishedAt.map { Double($0) / 1e9 } }.sorted()
        let unfinished = counted.count - completions.count
        return Outcome(
            scenario: scenario, time: unfinished == 0 ? (completions.last ?? 0) : Double(min(now, limit)) / 1e9, completions: completions,
            unfinished: unfinished, failed: counted.count { $0.failed }, seederUploadedBytes: hosts[0].uploaded, events: events, reallocations: reallocations
        )
    }

    func schedule(_ event: Event, at time: Int64) {
        sequence += 1
        queue.push(Scheduled(time: time, sequence: sequence, event: event))
    }

    func later(_ event: Event, trips: Int64 = 1) {
        schedule(event, at: now + trips * scenario.latencyNanoseconds)
    }

    private var deadline: NIODeadline { .uptimeNanoseconds(UInt64(1_000_000_000 + now)) }

    private func handle(_ event: Event) {
        switch event {
        case .join(let index):
            join(index)
        case .leave(let index):
            leave(index)
        case .tick(let index):
            guard hosts[index].machine != nil else { return }
            feed(index, .tick)
            schedule(.tick(index), at: now + Int64(Machine.tickInterval.nanoseconds))
        case .holdersListed(let index, let first):
            guard hosts[index].alive, hosts[index].machine != nil else { return }
            let records = listing(for: index)
            feed(index, first ? .started(records) : .holdersDiscovered(records))
        case .handshake(let id):
            let connection = connections[id]
            guard connection.open, hosts[connection.downloader].machine != nil else { return }
            if hosts[connection.holder].alive {
                feed(connection.downloader, .connected(connection.local, identity: identity))
            } else {
                connections[id].open = false
                feed(connection.downloader, .closed(connection.local, problem: "connection refused"))
            }
        case .toHolder(let id, let frame):
            guard connections[id].open, hosts[connections[id].holder].alive else { return }
            received(frame, on: id)
        case .toDownloader(let id, let frame):
            guard connections[id].open, hosts[connections[id].downloader].machine != nil else { return }
            feed(connections[id].downloader, .frame(connections[id].local, frame))
        case .closedByDownloader(let id):
            endSession(id)
        case .closedUnderDownloader(let id, let problem):
            guard connections[id].open else { return }
            connections[id].open = false
            if hosts[connections[id].downloader].machine != nil { feed(connections[id].downloader, .closed(connections[id].local, problem: problem)) }
        case .closedByMachine(let index, let local):
            feed(index, .closed(local, problem: nil))
        case .flowDone(let flow, let version):
            guard network.version(of: flow) == version, let id = flowOwner[flow] else { return }
            blockSent(on: id)
        case .reallocate:
            reallocationDue = false
            lastReallocation = now
            reallocations += 1
            for flow in network.reallocate(now: now) {
                if let done = network.completion(of: flow) { schedule(.flowDone(flow: flow, version: network.version(of: flow)), at: done) }
            }
        case .verified(let index, let piece, let local):
            guard hosts[index].machine != nil else { return }
            feed(index, .pieceVerified(piece: piece, connection: local))
        case .offerLook(let id):
            lookAtOffers(id)
        }
    }

    // MARK: - Hosts

    private func join(_ index: Int) {
        hosts[index].alive = true
        guard hosts[index].isLeecher else { return }
        hosts[index].machine = Machine(
            layout: layout, file: file, resumed: hosts[index].have, limits: scenario.limits,
            random: SplitMix(seed: scenario.seed &* 1_000_003 &+ UInt64(index)), now: deadline
        )
        later(.holdersListed(index, first: true), trips: 2)
        schedule(.tick(index), at: now + Int64(Machine.tickInterval.nanoseconds))
    }

    /// What the tracker lists for `index`: live holders but itself, at most the registry's maximum, at random.
    private func listing(for index: Int) -> [HolderRecord] {
        var listed = hosts.indices.filter { $0 != index && hosts[$0].alive }
        listed.shuffle(using: &random)
        return listed.prefix(TrackerResponse.maximumHolders).map { hosts[$0].record }
    }

    func leave(_ index: Int) {
        guard hosts[index].alive else { return }
        hosts[index].alive = false
        if hosts[index].counted, hosts[index].finishedAt == nil { waitingFor -= 1 }
        hosts[index].machine = nil
        for id in hosts[index].outgoing.values where connections[id].open {
            connections[id].open = false
            later(.closedByDownloader(id))
        }
        hosts[index].outgoing = [:]
        for id in hosts[index].serving.sorted() {
            stopSending(id)
            later(.closedUnderDownloader(id, "connection reset by the holder"))
        }
        hosts[index].serving = []
        hosts[index].offers = nil
        hosts[index].offerConnections = [:]
    }

    // MARK: - The download side

    private func feed(_ index: Int, _ event: Machine.Event) {
        guard var machine = hosts[index].machine else { return }
        let actions = machine.handle(event, now: deadline)
        hosts[index].machine = machine
        for action in actions { perform(action, for: index) }
    }

    private func perform(_ action: Machine.Action, for index: Int) {
        switch action {
        case .connect(let local, let record):
            let id = connections.count
            let holder = addresses[record.address] ?? -1
            connections.append(Connection(downloader: index, holder: max(holder, 0), local: local, open: holder >= 0))
            hosts[index].outgoing[local] = id
            if holder >= 0 {
                later(.handshake(id), trips: 4)
            } else {
                schedule(.closedUnderDownloader(id, "no such host"), at: now)
            }
        case .send(let local, let frames):
            guard let id = hosts[index].outgoing[local] else { return }
            for frame in frames { later(.toHolder(id, frame)) }
        case .close(let local):
            guard let id = hosts[index].outgoing.removeValue(forKey: local) else { return }
            if connections[id].open {
                connections[id].open = false
                later(.closedByDownloader(id))
            }
            schedule(.closedByMachine(host: index, connection: local), at: now)
        case .hashAndWrite(let piece, let data, let local):
            let delay = scenario.hashBytesPerSecond > 0 ? Self.nanoseconds(Double(data.readableBytes) / scenario.hashBytesPerSecond) : 0
            schedule(.verified(host: index, piece: piece, connection: local), at: now + delay)
        case .discover:
            later(.holdersListed(index, first: false), trips: 2)
        case .stored(let piece):
            _ = hosts[index].have.insert(piece)
            for id in hosts[index].serving.sorted() where connections[id].session?.partial == true {
                enqueue(.have(piece: UInt32(piece)), on: id)
            }
        case .progress, .log, .banned:
            break
        case .finish:
            hosts[index].finishedAt = now
            hosts[index].machine = nil
            if hosts[index].counted { waitingFor -= 1 }
        case .fail:
            hosts[index].failed = true
            leave(index)
        }
    }
}
