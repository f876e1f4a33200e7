import FileIO
import Foundation
import PKI
import Pieces
import X509

/// A signed `.mtorrent` file: where the trackers are, the file's name and size, how it is cut into
/// pieces, the SHA-256 of every piece, the root hash that names the file, the signer's certificate
/// and an ECDSA signature over the canonical bytes of all of that. docs/PROTOCOL.md shows the text.
public struct MTorrent: Sendable {
    /// The format version this code writes and the only one it reads.
    public static let formatVersion = 1
    /// The only hash algorithm of version 1.
    public static let hashAlgorithm = "sha256"
    /// Most tracker lines one file may name.
    public static let maximumTrackers = 8
    /// Largest `.mtorrent` accepted: enough for the most pieces a layout allows.
    public static let maximumFileSize = 24 * 1024 * 1024

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
        let unsigned = Content(trackers: trackers, name: name, layout: hashed.layout, pieceHashes: hashed.pieceHashes, root: hashed.root, signer: identity.certificate)
        let signedBytes = try unsigned.canonicalBytes()
        return MTorrent(content: unsigned, signature: try identity.sign(signedBytes))
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
        let identity: VerifiedIdentity
        do {
            identity = try trust.validate(signer, as: .peer, at: time)
        } catch {
            throw MTorrentError(.signerRefused, "the signer is refused: \(error.reason)", validation: error)
        }
        let signed: [UInt8]
        do {
            signed = try content.canonicalBytes()
        } catch {
            throw MTorrentError(.badCertificate, "the signer's certificate cannot be encoded: \(error)")
        }
        guard signer.publicKey.isValidSignature(signature, for: signed, signatureAlgorithm: CertificateProfile.signatureAlgorithm) else {
            throw MTorrentError(.signatureInvalid, "the signature does not match the content: the file was changed after '\(identity.name)' signed it")
        }
        return identity
    }

    /// The whole file as written to disk.
    public func serialized() throws -> [UInt8] {
        try content.canonicalBytes() + Array("signature \(Hex.encode(signature))\n".utf8)
    }

    init(content: Content, signature: [UInt8]) {
        trackers = content.trackers
        name = content.name
        layout = content.layout
        pieceHashes = content.pieceHashes
        root = content.root
        signer = content.signer
        self.signature = signature
    }

    var content: Content {
        Content(trackers: trackers, name: name, layout: layout, pieceHashes: pieceHashes, root: root, signer: signer)
    }

    /// Everything the signature covers, and its one canonical text.
    struct Content {
        var trackers: [TrackerAddress]
        var name: String
        var layout: PieceLayout
        var pieceHashes: [[UInt8]]
        var root: [UInt8]
        var signer: Certificate

        func canonicalBytes() throws -> [UInt8] {
            var text = "mtorrent \(MTorrent.formatVersion)\n"
            for tracker in trackers { text += "tracker \(tracker)\n" }
            text += "name \(name)\n"
            text += "size \(layout.fileSize)\n"
            text += "piece-size \(layout.pieceSize)\n"
            text += "hash-algorithm \(MTorrent.hashAlgorithm)\n"
            var bytes = Array(text.utf8)
            bytes.reserveCapacity(bytes.count + pieceHashes.count * 71 + 1024)
            for hash in pieceHashes { bytes += Array("piece \(Hex.encode(hash))\n".utf8) }
            bytes += Array("root \(Hex.encode(root))\nsigner\n\(try signer.serializeAsPEM().pemString)\n".utf8)
            return bytes
        }
    }
}
