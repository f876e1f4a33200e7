import FileIO
import Foundation
import PKI
import Pieces
import X509

/// A signed `.mtorrent` file: where the trackers are, the file's name and size, how it is cut into
/// pieces, the SHA-256 of every piece, the root hash that names the file, the signer's certificate
/// and an ECDSA signature. Version 1 signs all of that; version 2 signs a compact header (all but
/// the piece hashes, which the root binds) that a peer hands to the trackers as proof of what it
/// shares. docs/PROTOCOL.md shows both texts.
public struct MTorrent: Sendable {
    /// The format version this code writes.
    public static let formatVersion = 2
    /// The format versions this code reads.
    public static let readableVersions = 1...2
    /// The only hash algorithm of both versions.
    public static let hashAlgorithm = "sha256"
    /// Most tracker lines one file may name.
    public static let maximumTrackers = 32
    /// Largest `.mtorrent` accepted: enough for the most pieces a layout allows.
    public static let maximumFileSize = 24 * 1024 * 1024

    /// 1 or 2: what the signature covers and in which order the fields come.
    public let version: Int
    public let trackers: [TrackerAddress]
    /// The shared file's base name: a default for the downloader, never a path.
    public let name: String
    public let layout: PieceLayout
    public let pieceHashes: [[UInt8]]
    public let root: [UInt8]
    public let signer: Certificate
    public let signature: [UInt8]

    /// The root hash as lowercase hex: the file's name on the network.
    public var rootHex: String { Hex.encode(root) }

    /// Hashes the file at `path` and signs the result as `identity`, after checking that the
    /// identity's own certificate passes `trust` (a file signed by a refused signer is useless).
    public static func create(
        fileAt path: String, trackers: [TrackerAddress], identity: SigningIdentity, trust: TrustStore,
        pieceSize: Int? = nil, now: Date = Date(), progress: (@Sendable (UInt64) -> Void)? = nil
    ) throws -> MTorrent {
        let name = String(path.split(separator: "/").last ?? "")
        if let problem = FileNameRules.problem(with: name) { throw MTorrentError(.badName, "cannot share \(path): \(problem)") }
        guard (1...maximumTrackers).contains(trackers.count) else {
            throw MTorrentError(.badValue, "a .mtorrent names 1 to \(maximumTrackers) trackers, not \(trackers.count)")
        }
        do {
            _ = try trust.validate(identity.certificate, as: .peer, at: now)
        } catch {
            throw MTorrentError(.signerRefused, "cannot sign with this certificate: \(error.reason)", validation: error)
        }
        let hashed = try PieceHasher.hashFile(at: path, pieceSize: pieceSize, progress: progress)
        let unsigned = Content(version: formatVersion, trackers: trackers, name: name, layout: hashed.layout, pieceHashes: hashed.pieceHashes, root: hashed.root, signer: identity.certificate)
        let torrent = MTorrent(content: unsigned, signature: try identity.sign(unsigned.signedBytes()))
        guard let header = torrent.signedHeader, header.bytes.count <= SignedHeader.maximumBytes else {
            throw MTorrentError(.tooLarge, "the signed header is longer than \(SignedHeader.maximumBytes) bytes; use fewer trackers or a shorter name")
        }
        return torrent
    }

    /// Reads, parses and verifies a `.mtorrent` file; nothing in it is trusted until this returns.
    public static func load(from path: String, trust: TrustStore, at time: Date = Date()) throws(MTorrentError) -> (MTorrent, VerifiedIdentity) {
        let bytes: [UInt8]
        do {
            bytes = try FileIO.readFile(path, limit: maximumFileSize)
        } catch {
            if case .tooLarge = error.kind { throw MTorrentError(.tooLarge, error.description) }
            throw MTorrentError(.unreadable, error.description)
        }
        let torrent = try MTorrentParser.parse(bytes)
        return (torrent, try torrent.verify(trust: trust, at: time))
    }

    /// Checks the signature and the signer: our CA, not revoked, not expired, role peer.
    public func verify(trust: TrustStore, at time: Date = Date()) throws(MTorrentError) -> VerifiedIdentity {
        let signed: [UInt8]
        do {
            signed = try content.signedBytes()
        } catch {
            throw MTorrentError(.badCertificate, "the signer's certificate cannot be encoded: \(error)")
        }
        return try Self.verify(signature, over: signed, by: signer, trust: trust, at: time)
    }

    /// The one signer and signature check of both versions and of a ``SignedHeader``.
    static func verify(
        _ signature: [UInt8], over signed: [UInt8], by signer: Certificate, trust: TrustStore, at time: Date
    ) throws(MTorrentError) -> VerifiedIdentity {
        let identity: VerifiedIdentity
        do {
            identity = try trust.validate(signer, as: .peer, at: time)
        } catch {
            throw MTorrentError(.signerRefused, "the signer is refused: \(error.reason)", validation: error)
        }
        guard signer.publicKey.isValidSignature(signature, for: signed, signatureAlgorithm: CertificateProfile.signatureAlgorithm) else {
            throw MTorrentError(.signatureInvalid, "the signature does not match the content: it was changed after '\(identity.name)' signed it")
        }
        return identity
    }

    /// The signed header with its signature (version 2 only): what a peer shows a tracker.
    public var signedHeader: SignedHeader? {
        guard version == 2, let bytes = try? content.signedBytes() else { return nil }
        return SignedHeader(
            trackers: trackers, name: name, layout: layout, root: root, signer: signer, signature: signature,
            bytes: bytes + Self.signatureLine(signature)
        )
    }

    /// The whole file as written to disk.
    public func serialized() throws -> [UInt8] {
        let signed = try content.signedBytes() + Self.signatureLine(signature)
        return version == 1 ? signed : signed + content.pieceLines()
    }

    static func signatureLine(_ signature: [UInt8]) -> [UInt8] {
        Array("signature \(Hex.encode(signature))\n".utf8)
    }

    init(content: Content, signature: [UInt8]) {
        version = content.version
        trackers = content.trackers
        name = content.name
        layout = content.layout
        pieceHashes = content.pieceHashes
        root = content.root
        signer = content.signer
        self.signature = signature
    }

    var content: Content {
        Content(version: version, trackers: trackers, name: name, layout: layout, pieceHashes: pieceHashes, root: root, signer: signer)
    }

    /// Everything but the signature, and its one canonical text.
    struct Content {
        var version: Int
        var trackers: [TrackerAddress]
        var name: String
        var layout: PieceLayout
        var pieceHashes: [[UInt8]]
        var root: [UInt8]
        var signer: Certificate

        /// What the signature covers: in version 1 every field, in this order; in version 2 every
        /// field but the piece hashes (which then follow the signature).
        func signedBytes() throws -> [UInt8] {
            let fields = Self.headerFields(version: version, trackers: trackers, name: name, layout: layout)
            let rootAndSigner = Array("root \(Hex.encode(root))\nsigner\n\(try signer.serializeAsPEM().pemString)\n".utf8)
            return version == 1 ? fields + pieceLines() + rootAndSigner : fields + rootAndSigner
        }

        func pieceLines() -> [UInt8] {
            var bytes: [UInt8] = []
            bytes.reserveCapacity(pieceHashes.count * 71)
            for hash in pieceHashes { bytes += Array("piece \(Hex.encode(hash))\n".utf8) }
            return bytes
        }

        /// The lines from `mtorrent` to `hash-algorithm`, the same in both versions.
        static func headerFields(version: Int, trackers: [TrackerAddress], name: String, layout: PieceLayout) -> [UInt8] {
            var text = "mtorrent \(version)\n"
            for tracker in trackers { text += "tracker \(tracker)\n" }
            text += "name \(name)\n"
            text += "size \(layout.fileSize)\n"
            text += "piece-size \(layout.pieceSize)\n"
            text += "hash-algorithm \(MTorrent.hashAlgorithm)\n"
            return Array(text.utf8)
        }
    }
}
