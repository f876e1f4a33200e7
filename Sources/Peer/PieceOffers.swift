import NIOConcurrencyHelpers
import Pieces

/// How a seed hands out the first copy of a file, so that each piece leaves it about once and the
/// downloaders trade the rest among themselves (super-seeding). Instead of offering every piece,
/// the seed offers each connection a few pieces at a time — pieces no one has been sent yet and no
/// other connection has on offer — and one more each time a piece has been sent whole. Once every
/// piece has left the seed, each connection is offered everything, and downloaders ask the seed
/// for whatever is still rare. A pure state machine shared by the connections of one file; the
/// caller sends the offers as the bitfield and HAVE frames.
package struct PieceOffers {
    /// One connection of the file, as the caller numbers them.
    package typealias Connection = Int

    let pieceCount: Int
    /// Pieces offered to one connection and not yet sent whole.
    let window: Int
    /// The order in which pieces are first offered (a random permutation: downloaders that start
    /// together get different pieces).
    private let order: [Int]
    private var cursor = 0
    /// Pieces offered to a connection that went away before it took them: offered first again.
    private var returned: [Int] = []
    /// Pieces sent whole at least once (or that a downloader turned out to have already).
    private var out: Bitfield
    /// Pieces on offer to some connection and not yet sent whole.
    private var onOffer: Bitfield
    private var connections: [Connection: Offered] = [:]

    private struct Offered {
        /// Every piece offered to it.
        var all: Bitfield
        /// Offered and not yet sent whole.
        var pending: Set<Int>
        /// Offered everything (the first copy is out, or another seed serves it).
        var offeredEverything = false
    }

    /// Offers in pieces of `pieceSize` bytes, keeping about `windowBytes` on offer per connection
    /// (at least two pieces) so a downloader's request pipeline stays full.
    package init(pieceCount: Int, pieceSize: Int, windowBytes: Int, random: inout some RandomNumberGenerator) {
        self.pieceCount = pieceCount
        window = max(2, windowBytes / max(pieceSize, 1))
        order = Array(0..<pieceCount).shuffled(using: &random)
        out = Bitfield(count: pieceCount)
        onOffer = Bitfield(count: pieceCount)
    }

    /// Every piece has left the seed: everyone is offered everything.
    package var firstCopyIsOut: Bool { out.isComplete }

    /// A connection asked for the file: the pieces to put in its bitfield.
    package mutating func opened(_ connection: Connection) -> Bitfield {
        connections[connection] = Offered(all: Bitfield(count: pieceCount), pending: [])
        _ = refill(connection)
        return connections[connection]!.all
    }

    /// Whether `piece` was offered to `connection` (only offered pieces are served).
    package func offered(_ piece: Int, to connection: Connection) -> Bool {
        connections[connection]?.all.contains(piece) == true
    }

    /// `piece` has been sent whole to `connection`; returns the new offers, by connection (every
    /// connection gets everything the moment the last piece first leaves).
    package mutating func sent(_ piece: Int, to connection: Connection) -> [Connection: [Int]] {
        connections[connection]?.pending.remove(piece)
        return markOut([piece])
    }

    /// `connection` left the pieces it was offered alone while it asked for nothing here. No one
    /// else was sent them, so another seed is serving it: this seed cannot spread the first copy
    /// for that downloader alone, and it is offered everything. Its pending pieces were not sent,
    /// so they go back to be offered to others first: the first copy is out only once every piece
    /// has really left.
    package mutating func untouched(by connection: Connection) -> [Connection: [Int]] {
        guard let offered = connections[connection], !offered.pending.isEmpty else { return [:] }
        for piece in offered.pending.sorted() where !out.contains(piece) {
            onOffer.remove(piece)
            returned.append(piece)
        }
        connections[connection]?.pending = []
        connections[connection]?.offeredEverything = true
        connections[connection]?.all = .full(count: pieceCount)
        let rest = (0..<pieceCount).filter { !offered.all.contains($0) }
        var offers: [Connection: [Int]] = [:]
        for other in connections.keys.sorted() where other != connection {
            let added = refill(other)
            if !added.isEmpty { offers[other] = added }
        }
        if !rest.isEmpty { offers[connection] = rest }
        return offers
    }

    /// Whether `connection` has offers it has not taken.
    package func hasPendingOffers(_ connection: Connection) -> Bool {
        connections[connection]?.pending.isEmpty == false
    }

    /// `connection` is the file's only one, with offers pending: there is no one to spread the
    /// first copy to, so it may as well be offered everything (several seeds serving one
    /// downloader then do not wait on each other's windows).
    package mutating func alone(_ connection: Connection) -> [Connection: [Int]] {
        guard connections.count == 1 else { return [:] }
        return untouched(by: connection)
    }

    /// A connection ended: what it was offered and did not take goes back to be offered first.
    package mutating func closed(_ connection: Connection) {
        guard let gone = connections.removeValue(forKey: connection) else { return }
        for piece in gone.pending.sorted() where !out.contains(piece) {
            onOffer.remove(piece)
            returned.append(piece)
        }
    }

    private mutating func markOut(_ pieces: [Int]) -> [Connection: [Int]] {
        for piece in pieces {
            _ = out.insert(piece)
            onOffer.remove(piece)
        }
        var offers: [Connection: [Int]] = [:]
        for connection in connections.keys.sorted() {
            let added = refill(connection)
            if !added.isEmpty { offers[connection] = added }
        }
        return offers
    }

    /// Tops up `connection`'s offers to the window (or offers it everything once the first copy is out).
    private mutating func refill(_ connection: Connection) -> [Int] {
        guard var offered = connections[connection], !offered.offeredEverything else { return [] }
        var added: [Int] = []
        if firstCopyIsOut {
            for piece in 0..<pieceCount where offered.all.insert(piece) { added.append(piece) }
            offered.offeredEverything = true
            offered.pending = []
        } else {
            while offered.pending.count < window, let piece = nextFresh(excluding: offered.all) {
                _ = offered.all.insert(piece)
                offered.pending.insert(piece)
                _ = onOffer.insert(piece)
                added.append(piece)
            }
        }
        connections[connection] = offered
        return added
    }

    /// A piece not yet out, on offer nowhere, and never offered to this connection.
    private mutating func nextFresh(excluding seen: Bitfield) -> Int? {
        if let index = returned.firstIndex(where: { !out.contains($0) && !onOffer.contains($0) && !seen.contains($0) }) {
            return returned.remove(at: index)
        }
        returned.removeAll { out.contains($0) }
        // Pieces from the cursor on have never been offered to anyone.
        guard cursor < order.count else { return nil }
        defer { cursor += 1 }
        return order[cursor]
    }
}


/// The ``PieceOffers`` of one shared file, shared by its connections on their event loops: each
/// connection says how to send it HAVE frames, and new offers are sent through that, outside the lock.
final class SharedOffers: Sendable {
    private struct State {
        var offers: PieceOffers
        var senders: [PieceOffers.Connection: @Sendable ([Int]) -> Void] = [:]
        var nextConnection = 0
    }

    private let state: NIOLockedValueBox<State>

    init(pieceCount: Int, pieceSize: Int, windowBytes: Int) {
        var random = SystemRandomNumberGenerator()
        state = NIOLockedValueBox(State(offers: PieceOffers(pieceCount: pieceCount, pieceSize: pieceSize, windowBytes: windowBytes, random: &random)))
    }

    /// A connection asked for the file: its number and the bitfield to send it. `send` delivers
    /// later offers to it as HAVE frames.
    func open(sending send: @escaping @Sendable ([Int]) -> Void) -> (PieceOffers.Connection, Bitfield) {
        state.withLockedValue { state in
            let connection = state.nextConnection
            state.nextConnection += 1
            state.senders[connection] = send
            return (connection, state.offers.opened(connection))
        }
    }

    func offered(_ piece: Int, to connection: PieceOffers.Connection) -> Bool {
        state.withLockedValue { $0.offers.offered(piece, to: connection) }
    }

    func hasPendingOffers(_ connection: PieceOffers.Connection) -> Bool {
        state.withLockedValue { $0.offers.hasPendingOffers(connection) }
    }

    func sent(_ piece: Int, to connection: PieceOffers.Connection) {
        deliver { $0.sent(piece, to: connection) }
    }

    func untouched(by connection: PieceOffers.Connection) {
        deliver { $0.untouched(by: connection) }
    }

    func alone(_ connection: PieceOffers.Connection) {
        deliver { $0.alone(connection) }
    }

    /// A connection ended; returns whether none is left.
    func close(_ connection: PieceOffers.Connection) -> Bool {
        state.withLockedValue { state in
            state.senders[connection] = nil
            state.offers.closed(connection)
            return state.senders.isEmpty
        }
    }

    private func deliver(_ change: (inout PieceOffers) -> [PieceOffers.Connection: [Int]]) {
        let deliveries = state.withLockedValue { state in
            change(&state.offers).compactMap { connection, pieces in state.senders[connection].map { ($0, pieces) } }
        }
        for (send, pieces) in deliveries { send(pieces) }
    }
}
