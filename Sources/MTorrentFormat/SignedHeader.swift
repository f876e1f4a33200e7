import Foundation
import PKI
import Pieces
import X509

/// The signed part of a version 2 `.mtorrent` with its signature: trackers, name, size, piece
/// size, hash algorithm, root hash and signer — everything but the piece hashes, which the root
/// binds. It is the file's first lines up to and including the `signature` line, small enough to
/// travel in one tracker request as proof of who vouches for a root and what size it has.
public struct SignedHeader: Sendable, Equatable {
    /// Longest header accepted, signature line included (a peer certificate takes about 700).
    public static let maximumBytes = 8 * 1024

    public let trackers: [TrackerAddress]
    /// The shared file's base name: a default for the downloader, never a path.
    public let name: String
    public let layout: PieceLayout
    public let root: [UInt8]
    public let signer: Certificate
    public let signature: [UInt8]
    /// The header's exact text, signature line included.
    public let bytes: [UInt8]

    /// Reads a header strictly (the fields of a version 2 file up to its signature, canonical,
    /// at most ``maximumBytes``); nothing in it is trusted until ``verify(trust:at:)`` returns.
    public static func parse(_ bytes: [UInt8]) throws(MTorrentError) -> SignedHeader {
        try MTorrentParser.parseSignedHeader(bytes)
    }

    /// Checks the signature and the signer exactly as a whole `.mtorrent` is checked.
    public func verify(trust: TrustStore, at time: Date = Date()) throws(MTorrentError) -> VerifiedIdentity {
        let signed = Array(bytes.dropLast(MTorrent.signatureLine(signature).count))
        return try MTorrent.verify(signature, over: signed, by: signer, trust: trust, at: time)
    }
}
