/// The registry's slots found by root: an open-addressing hash table of slot numbers, four bytes
/// a bucket, where a dictionary would hold every 32-byte root a second time next to the entry that
/// already holds it. A root is looked for from the bucket its seeded hash names (so that chosen
/// roots cannot pile up in one place), onwards one bucket at a time, each candidate compared with
/// the root its entry holds (`rootOf`). At most 70% of the buckets are used; a removal shifts the
/// buckets after it back, so no lookup ever has to step over a hole.
struct SlotTable: Sendable {
    /// One more than the slot in each bucket, 0 for an empty one; a power of two of them.
    private var buckets = [UInt32](repeating: 0, count: 16)
    private(set) var count = 0

    /// Makes room for `count` slots without growing.
    mutating func reserveCapacity(_ count: Int, rootOf: (UInt32) -> RootKey) {
        let needed = Self.bucketCount(for: count)
        if needed > buckets.count { rehash(into: needed, rootOf: rootOf) }
    }

    func find(_ root: RootKey, rootOf: (UInt32) -> RootKey) -> UInt32? {
        probe(root, rootOf: rootOf).slot
    }

    /// Records `slot` as the place of `root` unless the table holds `root` already; returns the
    /// slot it holds, or nil if `slot` was recorded.
    mutating func insert(_ slot: UInt32, for root: RootKey, rootOf: (UInt32) -> RootKey) -> UInt32? {
        if Self.bucketCount(for: count + 1) > buckets.count { rehash(into: buckets.count * 2, rootOf: rootOf) }
        let (bucket, held) = probe(root, rootOf: rootOf)
        if let held { return held }
        buckets[bucket] = slot + 1
        count += 1
        return nil
    }

    /// Forgets `root`; returns the slot it had.
    mutating func remove(_ root: RootKey, rootOf: (UInt32) -> RootKey) -> UInt32? {
        let mask = buckets.count - 1
        let found = probe(root, rootOf: rootOf)
        guard let slot = found.slot else { return nil }
        var hole = found.bucket
        // Shift back every later bucket of the run that may move into the hole.
        var next = (hole + 1) & mask
        while buckets[next] != 0 {
            let home = Self.home(rootOf(buckets[next] - 1), mask: mask)
            // The bucket may move back unless its home lies after the hole (cyclically) up to it.
            let homeIsAfterHole = hole <= next ? (home > hole && home <= next) : (home > hole || home <= next)
            if !homeIsAfterHole {
                buckets[hole] = buckets[next]
                hole = next
            }
            next = (next + 1) & mask
        }
        buckets[hole] = 0
        count -= 1
        return slot
    }

    /// Every slot held, in no particular order.
    var slots: some Sequence<UInt32> {
        buckets.lazy.filter { $0 != 0 }.map { $0 - 1 }
    }

    /// The bucket that holds `root` and its slot, or the empty bucket where `root` would go.
    private func probe(_ root: RootKey, rootOf: (UInt32) -> RootKey) -> (bucket: Int, slot: UInt32?) {
        let mask = buckets.count - 1
        var index = Self.home(root, mask: mask)
        while buckets[index] != 0 {
            let slot = buckets[index] - 1
            if rootOf(slot) == root { return (index, slot) }
            index = (index + 1) & mask
        }
        return (index, nil)
    }

    private mutating func place(_ slot: UInt32, home: Int) {
        let mask = buckets.count - 1
        var index = home
        while buckets[index] != 0 { index = (index + 1) & mask }
        buckets[index] = slot + 1
    }

    private mutating func rehash(into bucketCount: Int, rootOf: (UInt32) -> RootKey) {
        let old = buckets
        buckets = [UInt32](repeating: 0, count: bucketCount)
        for bucket in old where bucket != 0 {
            place(bucket - 1, home: Self.home(rootOf(bucket - 1), mask: bucketCount - 1))
        }
    }

    /// The fewest buckets, a power of two, that hold `count` slots at most 70% full.
    private static func bucketCount(for count: Int) -> Int {
        var buckets = 16
        while count * 10 > buckets * 7 { buckets *= 2 }
        return buckets
    }

    private static func home(_ root: RootKey, mask: Int) -> Int {
        var hasher = Hasher()
        hasher.combine(root)
        return hasher.finalize() & mask
    }
}
