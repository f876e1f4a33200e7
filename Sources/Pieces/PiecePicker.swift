/// Chooses which piece each connection of a download fetches next.
///
/// Rarest first: among the missing pieces a holder has and no connection is fetching, the one the
/// fewest connected holders have, so rare pieces spread before their holders leave and every
/// downloader soon has something to give the others. The scan starts at a random piece and keeps
/// the first rarest it meets, which breaks ties at random and stops at once when a piece only
/// this holder has turns up. Endgame: once every missing piece is being fetched, a connection
/// with spare room may fetch a piece another connection is already fetching (at most
/// ``endgameFetchers`` at once), so one slow holder cannot hold up the last pieces.
///
/// Sparing seeds: asked for a piece for a connection to a holder of the whole file with
/// `sparingSeeds`, the picker offers only pieces no connected partial holder has, so that a seed
/// sends each piece into the swarm about once and downloaders trade the rest among themselves.
public struct PiecePicker: Sendable {
    /// Most connections fetching one piece at once in the endgame.
    public static let endgameFetchers = 2

    /// The pieces verified and written.
    public private(set) var have: Bitfield
    /// How many connected holders have each piece.
    private var availability: [Int]
    /// The connections fetching each piece now.
    private var fetchers: [Int: Set<Int>] = [:]
    /// Connected holders that have every piece.
    private var seeds = 0

    public init(have: Bitfield) {
        self.have = have
        availability = Array(repeating: 0, count: have.count)
    }

    public var isComplete: Bool { have.isComplete }

    /// True once every missing piece is being fetched by some connection.
    public var inEndgame: Bool { fetchers.count >= have.count - have.heldCount }

    /// A holder connected (or said what it has): count its pieces.
    public mutating func holderJoined(_ bits: Bitfield) {
        if bits.isComplete { seeds += 1 }
        for index in 0..<bits.count where bits.contains(index) { availability[index] += 1 }
    }

    /// A holder disconnected: forget its pieces.
    public mutating func holderLeft(_ bits: Bitfield) {
        if bits.isComplete { seeds -= 1 }
        for index in 0..<bits.count where bits.contains(index) { availability[index] -= 1 }
    }

    /// A connected holder verified one more piece (`nowComplete`: it was the last one it lacked).
    public mutating func holderGot(_ piece: Int, nowComplete: Bool) {
        availability[piece] += 1
        if nowComplete { seeds += 1 }
    }

    /// The next piece for `connection`, whose holder has `bits`, or nil if it has nothing to give.
    public mutating func next(
        for connection: Int, holding bits: Bitfield, sparingSeeds: Bool = false, random: inout some RandomNumberGenerator
    ) -> Int? {
        let count = have.count
        guard count > 0, !have.isComplete else { return nil }
        let endgame = inEndgame
        let spare = sparingSeeds && bits.isComplete && !endgame
        let start = Int.random(in: 0..<count, using: &random)
        var best: Int?
        var bestRank = Int.max
        for step in 0..<count {
            let index = (start + step) % count
            guard bits.contains(index), !have.contains(index) else { continue }
            let busy = fetchers[index]?.count ?? 0
            // Outside the endgame only free pieces; in it, the least fetched one this connection lacks.
            let rank: Int
            if busy == 0 {
                if spare, availability[index] > seeds { continue }
                rank = availability[index]
            } else {
                guard endgame, busy < Self.endgameFetchers, fetchers[index]?.contains(connection) == false else { continue }
                rank = Int.max / 2 + busy
            }
            if rank < bestRank {
                best = index
                bestRank = rank
                if rank <= 1 { break }
            }
        }
        if let best { fetchers[best, default: []].insert(connection) }
        return best
    }

    /// `connection` stopped fetching `piece` (it left, or the piece failed its hash).
    public mutating func release(_ piece: Int, from connection: Int) {
        fetchers[piece]?.remove(connection)
        if fetchers[piece]?.isEmpty == true { fetchers[piece] = nil }
    }

    /// `piece` is verified and written; returns the other connections that were still fetching it.
    @discardableResult
    public mutating func completed(_ piece: Int) -> Set<Int> {
        have.insert(piece)
        return fetchers.removeValue(forKey: piece) ?? []
    }
}
