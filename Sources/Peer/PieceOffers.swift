import NIOConcurrencyHelpers
import Pieces

/// How a seed hands out the first copies of a file, so that each piece leaves it about as often as
/// asked and the downloaders trade the rest among themselves (super-seeding). Instead of offering
/// every piece, the seed offers each connection a few pieces at a time — pieces this copy has not
/// been sent yet and no other connection has on offer — and one more each time a piece has been
/// sent whole. Once every piece has left the seed `copies` times, each connection is offered
/// everything, and downloaders ask the seed for whatever is still rare. A pure state machine
/// shared by the connections of one file; the caller sends the offers as the bitfield and HAVE
/// frames.
package struct PieceOffers {
    /// One connection of the file, as the caller numbers them.
    package typealias Connection = Int

    let pieceCount: Int
    /// Pieces offered to one connection and not yet sent whole.
    let window: Int
    /// Copies of each piece handed out by offers before everyone is offered everything.
    let copies: Int
    /// The copy being handed out now, from 1; past `copies` everyone is offered everything.
    private var copy = 1
    /// The order in which pieces are offered, the same for every copy (a random permutation:
    /// downloaders that start together get different pieces).
    private let order: [Int]
    /// Where this copy's next look into `order` starts: every piece before it is out or on offer.
    private var head = 0
    /// Pieces offered to a connection that went away before it took them: offered first again.
    private var returned: [Int] = []
    /// Times each piece was sent whole, at most `copies`.
    private var sends: [Int]
    /// Pieces whose current copy is not out yet.
    private var remaining: Int
    /// Pieces on offer to some connection and not yet sent whole for this copy.
    private var onOffer: Bitfield
    private var connections: [Connection: Offered] = [:]

    private struct Offered {
        /// Every piece offered to it.
        var all: Bitfield
        /// Offered and not yet sent whole.
        var pending: Set<Int>
        /// Offered everything (every copy is out, or another seed serves it).
        var offeredEverything = false
    }

    /// Offers in pieces of `pieceSize` bytes, keeping about `windowBytes` on offer per connection
    /// (at least two pieces) so a downloader's request pipeline stays full, until each piece left
    /// `copies` times (at least once).
    package init(pieceCount: Int, pieceSize: Int, windowBytes: Int, copies: Int = 1, random: inout some RandomNumberGenerator) {
        self.pieceCount = pieceCount
        window = max(2, windowBytes / max(pieceSize, 1))
        self.copies = max(1, copies)
        order = Array(0..<pieceCount).shuffled(using: &random)
        sends = Array(repeating: 0, count: pieceCount)
        remaining = pieceCount
        onOffer = Bitfield(count: pieceCount)
    }

    /// The last copy is out (see `currentCopyIsOut`): everyone is offered everything.
    package var everyCopyIsOut: Bool { copy > copies }

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
    /// connection gets everything the moment the last copy is out).
    package mutating func sent(_ piece: Int, to connection: Connection) -> [Connection: [Int]] {
        connections[connection]?.pending.remove(piece)
        if sends[piece] < copies {
            sends[piece] += 1
            if sends[piece] == copy { remaining -= 1 }
        }
        if sends[piece] >= copy { onOffer.remove(piece) }
        var offers = refillAll()
        while currentCopyIsOut {
            startNextCopy()
            offers.merge(refillAll()) { $0 + $1 }
        }
        return offers
    }

    /// Whether the copy being handed out is out: every piece has really left that often. (A
    /// downloader that fetched its offers from other holders leaves them with the seed; the
    /// caller's ``OfferWatch`` finds it asking for nothing and its offers go to others.)
    private var currentCopyIsOut: Bool { copy <= copies && remaining == 0 }

    /// Tops up every connection's offers; returns the new ones, by connection.
    private mutating func refillAll() -> [Connection: [Int]] {
        var offers: [Connection: [Int]] = [:]
        for connection in connections.keys.sorted() {
            let added = refill(connection)
            if !added.isEmpty { offers[connection] = added }
        }
        return offers
    }

    /// `connection` left the pieces it was offered alone while it asked for nothing here. No one
    /// else was sent them, so another seed is serving it: this seed cannot spread the copies for
    /// that downloader alone, and it is offered everything. Its pending pieces were not sent, so
    /// they go back to be offered to others first: a copy is out only once every piece has really
    /// left.
    package mutating func untouched(by connection: Connection) -> [Connection: [Int]] {
        guard let offered = connections[connection], !offered.pending.isEmpty else { return [:] }
        putBack(offered.pending)
        connections[connection]?.pending = []
        connections[connection]?.offeredEverything = true
        connections[connection]?.all = .full(count: pieceCount)
        let rest = (0..<pieceCount).filter { !offered.all.contains($0) }
        var offers = refillAll()
        if !rest.isEmpty { offers[connection] = rest }
        return offers
    }

    /// Whether `connection` has offers it has not taken.
    package func hasPendingOffers(_ connection: Connection) -> Bool {
        connections[connection]?.pending.isEmpty == false
    }

    /// `connection` is the file's only one, with offers pending: there is no one to spread the
    /// copies to, so it may as well be offered everything (several seeds serving one downloader
    /// then do not wait on each other's windows).
    package mutating func alone(_ connection: Connection) -> [Connection: [Int]] {
        guard connections.count == 1 else { return [:] }
        return untouched(by: connection)
    }

    /// A connection ended: what it was offered and did not take goes back to be offered first.
    package mutating func closed(_ connection: Connection) {
        guard let gone = connections.removeValue(forKey: connection) else { return }
        putBack(gone.pending)
    }

    /// Pieces offered and not taken are offered first again, if this copy of them is not out.
    private mutating func putBack(_ pieces: Set<Int>) {
        for piece in pieces.sorted() where sends[piece] < copy {
            onOffer.remove(piece)
            returned.append(piece)
        }
    }

    /// The copy being handed out is out: the next starts, in the same order, with the pieces still
    /// pending at some connection counted as on offer.
    private mutating func startNextCopy() {
        copy += 1
        guard copy <= copies else { return }
        head = 0
        returned = []
        remaining = sends.count(where: { $0 < copy })
        onOffer = Bitfield(count: pieceCount)
        for offered in connections.values {
            for piece in offered.pending where sends[piece] < copy { _ = onOffer.insert(piece) }
        }
    }

    /// Tops up `connection`'s offers to the window (or offers it everything once every copy is out).
    private mutating func refill(_ connection: Connection) -> [Int] {
        guard var offered = connections[connection], !offered.offeredEverything else { return [] }
        var added: [Int] = []
        if everyCopyIsOut {
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

    /// A piece whose current copy is not out, on offer nowhere, and never offered to this connection.
    private mutating func nextFresh(excluding seen: Bitfield) -> Int? {
        returned.removeAll { sends[$0] >= copy }
        if let index = returned.firstIndex(where: { !onOffer.contains($0) && !seen.contains($0) }) {
            return returned.remove(at: index)
        }
        var index = head
        while index < order.count {
            let piece = order[index]
            if sends[piece] >= copy || onOffer.contains(piece) {
                // Out, or on offer (it comes back through `returned` if not taken): no one's next.
                if index == head { head += 1 }
            } else if !seen.contains(piece) {
                return piece
            }
            index += 1
        }
        return nil
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

    init(pieceCount: Int, pieceSize: Int, windowBytes: Int, copies: Int) {
        var random = SystemRandomNumberGenerator()
        let offers = PieceOffers(pieceCount: pieceCount, pieceSize: pieceSize, windowBytes: windowBytes, copies: copies, random: &random)
        state = NIOLockedValueBox(State(offers: offers))
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
