import PKITesting
import Pieces
import Testing

@testable import Peer

/// Super-seeding: which pieces a seed offers each connection, until every copy it hands out is out.
@Suite struct PieceOffersTests {
    /// 16 pieces of 256 KiB, two pieces on offer per connection.
    func offers() -> PieceOffers {
        var random = SplitMix(seed: 3)
        return PieceOffers(pieceCount: 16, pieceSize: 256 * 1024, windowBytes: 512 * 1024, random: &random)
    }

    func pieces(_ bits: Bitfield) -> Set<Int> { Set((0..<bits.count).filter(bits.contains)) }

    @Test func connectionsAreOfferedDifferentPiecesAFewAtATime() {
        var offers = offers()
        let first = pieces(offers.opened(1))
        let second = pieces(offers.opened(2))
        #expect(first.count == 2 && second.count == 2)
        #expect(first.isDisjoint(with: second))
        #expect(first.allSatisfy { offers.offered($0, to: 1) } && !second.contains { offers.offered($0, to: 1) })
    }

    @Test func aPieceSentWholeIsReplacedByOneNoOneWasOffered() {
        var offers = offers()
        let first = pieces(offers.opened(1))
        let second = pieces(offers.opened(2))
        let more = offers.sent(first.min()!, to: 1)
        #expect(more.keys.sorted() == [1])
        let added = Set(more[1]!)
        #expect(added.count == 1 && added.isDisjoint(with: first.union(second)))
    }

    @Test func onceEveryPieceLeftTheSeedEveryoneIsOfferedEverything() {
        var offers = offers()
        var held: [Int: Set<Int>] = [1: pieces(offers.opened(1)), 2: pieces(offers.opened(2))]
        var sentOnce = Set<Int>()
        var everything: [Int: [Int]] = [:]
        // The two connections take turns sending their lowest pending piece.
        for round in 0..<32 where !offers.everyCopyIsOut {
            let connection = round % 2 + 1
            guard let piece = held[connection]!.subtracting(sentOnce).min() else { continue }
            sentOnce.insert(piece)
            for (target, added) in offers.sent(piece, to: connection) {
                held[target]!.formUnion(added)
                if offers.everyCopyIsOut { everything[target] = added }
            }
        }
        #expect(offers.everyCopyIsOut)
        #expect(sentOnce.count == 16, "every piece was sent exactly once before everything was offered")
        #expect(held[1]!.count == 16 && held[2]!.count == 16)
        #expect(everything.keys.sorted() == [1, 2])
        #expect(pieces(offers.opened(3)).count == 16, "a latecomer is offered everything")
    }

    @Test func withTwoCopiesEachPieceLeavesTwiceToDifferentConnectionsBeforeEverythingIsOffered() {
        var random = SplitMix(seed: 5)
        var offers = PieceOffers(pieceCount: 16, pieceSize: 256 * 1024, windowBytes: 512 * 1024, copies: 2, random: &random)
        var pending: [Int: Set<Int>] = [:]
        var received: [Int: Set<Int>] = [1: [], 2: [], 3: []]
        for connection in 1...3 { pending[connection] = pieces(offers.opened(connection)) }
        var sends = [Int](repeating: 0, count: 16)
        // The connections take turns sending their lowest pending piece, until everything is offered.
        for turn in 0..<200 where !offers.everyCopyIsOut {
            let connection = turn % 3 + 1
            guard let piece = pending[connection]!.min() else { continue }
            pending[connection]!.remove(piece)
            #expect(received[connection]!.insert(piece).inserted, "connection \(connection) is never offered a piece it was sent")
            sends[piece] += 1
            for (target, added) in offers.sent(piece, to: connection) { pending[target]!.formUnion(added) }
        }
        #expect(offers.everyCopyIsOut)
        #expect(sends.allSatisfy { $0 >= 1 && $0 <= 2 }, "no piece left a third time by offers: \(sends)")
        // The second copy is out but for pieces on offer: at most a window (two) per connection.
        #expect(sends.count(where: { $0 == 2 }) >= 16 - 3 * 2, "\(sends)")
        #expect(pieces(offers.opened(4)).count == 16, "a latecomer is offered everything")
    }

    @Test func aLaterCopyLeftOnOfferGoesToOthersOnceItsDownloaderIsFoundServedElsewhere() {
        var random = SplitMix(seed: 7)
        var offers = PieceOffers(pieceCount: 16, pieceSize: 256 * 1024, windowBytes: 512 * 1024, copies: 2, random: &random)
        var pending: [Int: Set<Int>] = [:]
        for connection in 1...3 { pending[connection] = pieces(offers.opened(connection)) }
        var sent = 0
        // Once the first copy is out, connection 1 fetches its offers from other holders and
        // never asks the seed for them.
        for turn in 0..<200 where !offers.everyCopyIsOut {
            let connection = turn % 3 + 1
            guard connection != 1 || sent < 16, let piece = pending[connection]!.min() else { continue }
            pending[connection]!.remove(piece)
            sent += 1
            for (target, added) in offers.sent(piece, to: connection) { pending[target]!.formUnion(added) }
        }
        #expect(!offers.everyCopyIsOut, "the second copy is out only once it has really left")
        #expect(offers.hasPendingOffers(1))
        // The seed's watch finds connection 1 asking for nothing: its offers go to the others.
        for (target, added) in offers.untouched(by: 1) where target != 1 { pending[target]!.formUnion(added) }
        for turn in 0..<200 where !offers.everyCopyIsOut {
            let connection = turn % 2 + 2
            guard let piece = pending[connection]!.min() else { continue }
            pending[connection]!.remove(piece)
            for (target, added) in offers.sent(piece, to: connection) where target != 1 { pending[target]!.formUnion(added) }
        }
        #expect(offers.everyCopyIsOut, "the offers left with connection 1 kept the seed from offering everything")
    }

    @Test func whatALeavingConnectionDidNotTakeIsOfferedFirstToTheNext() {
        var offers = offers()
        let left = pieces(offers.opened(1))
        offers.closed(1)
        #expect(pieces(offers.opened(2)) == left)
    }

    @Test func aDownloaderServedByAnotherSeedIsOfferedEverything() {
        var offers = offers()
        let first = pieces(offers.opened(1))
        #expect(offers.hasPendingOffers(1))
        // It asked for none of its offers: no one else has them, so another seed sends them.
        let rest = offers.untouched(by: 1)
        #expect(Set(rest[1] ?? []) == Set(0..<16).subtracting(first))
        #expect((0..<16).allSatisfy { offers.offered($0, to: 1) })
        // They were not sent: a newcomer is offered them first, and the first copy is not out.
        #expect(pieces(offers.opened(2)) == first)
        #expect(!offers.everyCopyIsOut)
        #expect(offers.untouched(by: 3).isEmpty, "an unknown connection changes nothing")
    }

    @Test func aLoneDownloaderIsOfferedEverythingAndOthersAreNot() {
        var offers = offers()
        _ = offers.opened(1)
        _ = offers.opened(2)
        #expect(offers.alone(1).isEmpty, "two downloaders share the first copy")
        offers.closed(2)
        #expect(Set(offers.alone(1)[1] ?? []).count == 14)
        #expect((0..<16).allSatisfy { offers.offered($0, to: 1) })
    }

    @Test func aSmallWindowStillKeepsTwoPiecesOnOffer() {
        var random = SplitMix(seed: 1)
        var offers = PieceOffers(pieceCount: 4, pieceSize: 64 * 1024 * 1024, windowBytes: 4 * 1024 * 1024, random: &random)
        #expect(offers.window == 2)
        #expect(offers.opened(1).heldCount == 2)
    }
}
