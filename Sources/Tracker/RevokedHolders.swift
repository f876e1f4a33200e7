import NIOConcurrencyHelpers
import PKI

/// The holders whose certificates the revocation list in force names, so that answers leave them
/// out the moment a new list is loaded rather than when their entries expire. Holders are keyed
/// by certificate fingerprint and a list names serials, so the tracker remembers each
/// certificate's serial from its handshake. A holder replayed from the journal whose certificate
/// has not connected since the start is not known here; its entry lapses after the TTL.
final class RevokedHolders: Sendable {
    private struct Book {
        /// Every certificate that completed a handshake, by fingerprint.
        var known: [String: VerifiedIdentity] = [:]
        var revoked: Set<String> = []
    }

    private let book = NIOLockedValueBox(Book())

    /// Remembers the serial of a certificate that just proved itself.
    func learn(_ identity: VerifiedIdentity) {
        book.withLockedValue { $0.known[identity.fingerprint] = identity }
    }

    /// Recomputes which known certificates `trust` revokes; returns how many.
    @discardableResult
    func update(for trust: TrustStore) -> Int {
        book.withLockedValue { book in
            book.revoked = Set(book.known.values.filter(trust.revokes).map(\.fingerprint))
            return book.revoked.count
        }
    }

    /// Fingerprints of the holders answers must leave out now.
    var fingerprints: Set<String> { book.withLockedValue { $0.revoked } }
}
