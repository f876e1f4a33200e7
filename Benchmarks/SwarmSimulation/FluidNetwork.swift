/// Hosts joined by links of fixed capacity, as fluids: every host has an uplink and a downlink,
/// and each transfer in progress (a flow, from one host's uplink to another's downlink) gets a
/// rate. Rates are max-min fair over all links at once (progressive filling: the most contended
/// link fixes the rate of its flows, whose share is taken from their other link, and so on), and
/// they are worked out again only when ``reallocate(now:)`` is called — the engine calls it when
/// flows started or ended. Between two reallocations every flow moves at a constant rate, so when
/// its current message is through is known exactly.
///
/// Time is in nanoseconds, sizes in bytes, capacities in bytes per second.
public struct FluidNetwork {
    /// One flow: a sender's messages to one receiver, sent one after the other.
    struct Flow {
        let source: Int
        let destination: Int
        /// Bytes of the current message left at `since`.
        var remaining: Double
        var rate: Double = 0
        var since: Int64
        /// Bumped on every change of rate or message, so a completion computed earlier can be told stale.
        var version = 0
        var active = true
    }

    /// The bytes per second each host may send.
    public let up: [Double]
    /// The bytes per second each host may receive.
    public let down: [Double]
    private(set) var flows: [Flow] = []
    private var free: [Int] = []
    private var activeIDs: [Int] = []
    private var activeIndex: [Int: Int] = [:]
    /// Flows started or ended since the last reallocation.
    public private(set) var isDirty = false

    public init(up: [Double], down: [Double]) {
        precondition(up.count == down.count)
        self.up = up
        self.down = down
    }

    public var hostCount: Int { up.count }
    public var activeFlowCount: Int { activeIDs.count }

    /// Starts a flow with a first message of `bytes`; it moves at rate 0 until the next reallocation.
    public mutating func start(from source: Int, to destination: Int, bytes: Double, now: Int64) -> Int {
        let flow = Flow(source: source, destination: destination, remaining: bytes, since: now)
        let id: Int
        if let reused = free.popLast() {
            id = reused
            let version = flows[id].version + 1
            flows[id] = flow
            flows[id].version = version
        } else {
            id = flows.count
            flows.append(flow)
        }
        activeIndex[id] = activeIDs.count
        activeIDs.append(id)
        isDirty = true
        return id
    }

    /// The flow's message is through; the next one, of `bytes`, goes on at the same rate.
    public mutating func next(_ id: Int, bytes: Double, now: Int64) {
        flows[id].remaining = bytes
        flows[id].since = now
        flows[id].version += 1
    }

    /// Ends a flow (its sender has nothing more to send, or the connection ended).
    public mutating func stop(_ id: Int) {
        guard flows[id].active, let index = activeIndex.removeValue(forKey: id) else { return }
        flows[id].active = false
        flows[id].version += 1
        let last = activeIDs.removeLast()
        if last != id {
            activeIDs[index] = last
            activeIndex[last] = index
        }
        free.append(id)
        isDirty = true
    }

    public func rate(of id: Int) -> Double { flows[id].rate }
    public func version(of id: Int) -> Int { flows[id].version }

    /// When the flow's current message is through at its present rate; nil while it does not move.
    public func completion(of id: Int) -> Int64? {
        let flow = flows[id]
        guard flow.active, flow.rate > 0 else { return nil }
        return flow.since + Int64((max(flow.remaining, 0) / flow.rate * 1e9).rounded(.up))
    }

    /// Bytes of the flow's current message sent by `now`.
    public func remaining(of id: Int, now: Int64) -> Double {
        let flow = flows[id]
        return max(0, flow.remaining - flow.rate * Double(now - flow.since) / 1e9)
    }

    /// Works out every active flow's max-min fair rate; returns the flows whose rate changed (their
    /// completion moved).
    public mutating func reallocate(now: Int64) -> [Int] {
        isDirty = false
        let hosts = hostCount
        // Links: uplinks are 0..<hosts, downlinks hosts..<2·hosts.
        var capacity = up + down
        var unfixed = [Int](repeating: 0, count: 2 * hosts)
        for id in activeIDs {
            unfixed[flows[id].source] += 1
            unfixed[hosts + flows[id].destination] += 1
        }
        // The flows of each link, packed.
        var start = [Int](repeating: 0, count: 2 * hosts + 1)
        for link in 0..<(2 * hosts) { start[link + 1] = start[link] + unfixed[link] }
        var fill = start
        var members = [Int](repeating: 0, count: start[2 * hosts])
        for id in activeIDs {
            members[fill[flows[id].source]] = id
            fill[flows[id].source] += 1
            members[fill[hosts + flows[id].destination]] = id
            fill[hosts + flows[id].destination] += 1
        }
        var stamp = [Int](repeating: 0, count: 2 * hosts)
        var fixed = [Bool](repeating: false, count: flows.count)
        var newRate = [Double](repeating: 0, count: flows.count)
        var heap = MinHeap<Share>()
        for link in 0..<(2 * hosts) where unfixed[link] > 0 {
            heap.push(Share(level: capacity[link] / Double(unfixed[link]), link: link, stamp: 0))
        }
        while let share = heap.pop() {
            let link = share.link
            guard share.stamp == stamp[link], unfixed[link] > 0 else { continue }
            let level = max(0, capacity[link] / Double(unfixed[link]))
            for slot in start[link]..<start[link + 1] {
                let id = members[slot]
                guard !fixed[id] else { continue }
                fixed[id] = true
                newRate[id] = level
                let other = link < hosts ? hosts + flows[id].destination : flows[id].source
                capacity[other] -= level
                unfixed[other] -= 1
                stamp[other] += 1
                if unfixed[other] > 0 {
                    heap.push(Share(level: max(0, capacity[other]) / Double(unfixed[other]), link: other, stamp: stamp[other]))
                }
            }
            unfixed[link] = 0
        }
        var changed: [Int] = []
        for id in activeIDs where newRate[id] != flows[id].rate {
            flows[id].remaining = remaining(of: id, now: now)
            flows[id].since = now
            flows[id].rate = newRate[id]
            flows[id].version += 1
            changed.append(id)
        }
        return changed
    }

    private struct Share: Comparable {
        let level: Double
        let link: Int
        let stamp: Int

        static func < (a: Share, b: Share) -> Bool {
            a.level != b.level ? a.level < b.level : a.link < b.link
        }
    }
}
