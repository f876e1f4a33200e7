import NIOCore

/// How a seed's connection tells, looking twice a second, that its downloader leaves its
/// super-seeding offers alone because another seed serves it (``PieceOffers/untouched(by:)``).
/// Offers go out behind the blocks already in the socket, so a downloader sharing a slow uplink
/// may see them only much later: only a long silence counts. A pure rule; the caller looks every
/// ``interval`` and says what it saw.
package struct OfferWatch {
    /// How often the caller looks.
    package static let interval = TimeAmount.milliseconds(500)
    /// Looks in a row (two seconds) after which a downloader that asks for none of its offers is
    /// taken to be served by another seed.
    package static let idleLooksForAnotherSeed = 4

    /// Looks in a row that found the downloader asking for none of its offers.
    private var idleLooks = 0

    package init() {}

    /// One look: `quiet` when the downloader asked for nothing since the last look and nothing of
    /// it is queued or being sent, `pending` when it has offers it has not taken. Returns whether
    /// it is now taken to be served by another seed.
    package mutating func look(quiet: Bool, pending: Bool) -> Bool {
        guard quiet, pending else {
            idleLooks = 0
            return false
        }
        idleLooks += 1
        guard idleLooks >= Self.idleLooksForAnotherSeed else { return false }
        idleLooks = 0
        return true
    }
}
