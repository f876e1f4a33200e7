import Pieces
import Testing

@Suite struct BitfieldTests {
    @Test func aReceivedFieldMustHaveTheExactLengthAndNoSpareBits() {
        #expect(Bitfield(bytes: [0xff, 0x80], count: 9)?.heldCount == 9)
        #expect(Bitfield(bytes: [0xff, 0xc0], count: 9) == nil)
        #expect(Bitfield(bytes: [0xff], count: 9) == nil)
        #expect(Bitfield(bytes: [0xff, 0x80, 0x00], count: 9) == nil)
        #expect(Bitfield(bytes: [], count: 0)?.isComplete == true)
    }

    @Test func insertCountsEachPieceOnce() {
        var field = Bitfield(count: 10)
        let first = field.insert(3)
        let again = field.insert(3)
        #expect(first && !again)
        #expect(field.contains(3) && !field.contains(4) && !field.contains(10) && !field.contains(-1))
        #expect(field.heldCount == 1)
        #expect(field.bytes == [0x10, 0x00])
        #expect(Bitfield.full(count: 10).bytes == [0xff, 0xc0])
    }
}

@Suite struct PiecePickerTests {
    private var random = SystemRandomNumberGenerator()

    private func field(_ count: Int, _ pieces: [Int]) -> Bitfield {
        var field = Bitfield(count: count)
        for piece in pieces { field.insert(piece) }
        return field
    }

    @Test mutating func theRarestPieceComesFirst() {
        // Pieces 0-7 are held by three holders, piece 5 by one only.
        var picker = PiecePicker(have: Bitfield(count: 8))
        let everything = Bitfield.full(count: 8)
        picker.holderJoined(everything)
        picker.holderJoined(field(8, [0, 1, 2, 3, 4, 6, 7]))
        picker.holderJoined(field(8, [0, 1, 2, 3, 4, 6, 7]))
        for _ in 0..<20 {
            var copy = picker
            let piece = copy.next(for: 1, holding: everything, random: &random)
            #expect(piece == 5)
        }
    }

    @Test mutating func outsideTheEndgameNoPieceIsFetchedTwice() {
        var picker = PiecePicker(have: field(10, [0]))
        let everything = Bitfield.full(count: 10)
        picker.holderJoined(everything)
        picker.holderJoined(everything)
        var chosen: [Int] = []
        for connection in [1, 2, 1, 2, 1, 2, 1, 2, 1] {
            #expect(!picker.inEndgame)
            if let piece = picker.next(for: connection, holding: everything, random: &random) { chosen.append(piece) }
        }
        #expect(chosen.sorted() == Array(1..<10))
        #expect(picker.inEndgame)
    }

    @Test mutating func theEndgameAllowsOneDuplicateFetchPerPiece() {
        var picker = PiecePicker(have: Bitfield(count: 3))
        let everything = Bitfield.full(count: 3)
        for _ in 0..<3 { picker.holderJoined(everything) }
        let first = (0..<3).compactMap { _ in picker.next(for: 1, holding: everything, random: &random) }
        #expect(first.sorted() == [0, 1, 2])
        // The same connection never fetches a piece twice; a second one may, a third may not.
        #expect(picker.next(for: 1, holding: everything, random: &random) == nil)
        let second = (0..<3).compactMap { _ in picker.next(for: 2, holding: everything, random: &random) }
        #expect(second.sorted() == [0, 1, 2])
        #expect(picker.next(for: 3, holding: everything, random: &random) == nil)
        let stillFetching = picker.completed(1)
        #expect(stillFetching == [1, 2])
        #expect(!picker.have.contains(0) && picker.have.contains(1))
    }

    @Test mutating func aReleasedPieceIsOfferedAgainAndOnlyWhatTheHolderHasIsOffered() {
        var picker = PiecePicker(have: Bitfield(count: 4))
        let partial = field(4, [2])
        picker.holderJoined(partial)
        #expect(picker.next(for: 1, holding: partial, random: &random) == 2)
        #expect(picker.next(for: 2, holding: partial, random: &random) == nil)
        picker.release(2, from: 1)
        #expect(picker.next(for: 2, holding: partial, random: &random) == 2)
        picker.holderLeft(partial)
        #expect(picker.next(for: 3, holding: Bitfield(count: 4), random: &random) == nil)
    }

    @Test mutating func aCompleteDownloadOffersNothing() {
        var picker = PiecePicker(have: Bitfield.full(count: 4))
        #expect(picker.isComplete)
        #expect(picker.next(for: 1, holding: Bitfield.full(count: 4), random: &random) == nil)
    }
}

@Suite struct SparingSeedsTests {
    @Test func aSeedIsAskedOnlyForPiecesNoPartialHolderHas() {
        var random = SystemRandomNumberGenerator()
        var picker = PiecePicker(have: Bitfield(count: 4))
        let seed = Bitfield.full(count: 4)
        var partial = Bitfield(count: 4)
        for piece in [0, 1, 3] { partial.insert(piece) }
        picker.holderJoined(seed)
        picker.holderJoined(partial)
        let spared = picker.next(for: 1, holding: seed, sparingSeeds: true, random: &random)
        #expect(spared == 2)
        let nothingElse = picker.next(for: 1, holding: seed, sparingSeeds: true, random: &random)
        #expect(nothingElse == nil)
        // Without sparing the seed is asked for the rest as well.
        let asked = picker.next(for: 1, holding: seed, sparingSeeds: false, random: &random)
        #expect(asked != nil && asked != 2)
    }
}
