import PKI
import Pieces
import X509

/// The strict reader of `.mtorrent` text, both versions, and of a version 2 signed header alone.
/// Every field must appear once, in order, in its one canonical spelling; sizes are bounded before
/// anything is allocated for them; and the result is written back out and compared byte for byte
/// with the input, so no two texts parse to the same file.
public enum MTorrentParser {
    /// Longest certificate block accepted, in lines.
    static let maximumCertificateLines = 128
    /// Longest DER signature accepted, in bytes (ECDSA P-256 needs at most 72).
    static let maximumSignatureBytes = 160
    private static let fieldOrder = ["mtorrent", "tracker", "name", "size", "piece-size", "hash-algorithm", "piece", "root", "signer", "signature"]

    public static func parse(_ bytes: [UInt8]) throws(MTorrentError) -> MTorrent {
        var cursor = try LineCursor(bytes, limit: MTorrent.maximumFileSize)
        var seen: Set<String> = []
        let front = try parseFront(&cursor, seen: &seen)
        let pieceHashes: [[UInt8]], root: [UInt8], rootLine: Int, signer: Certificate, signature: [UInt8]
        if front.version == 1 {
            pieceHashes = try parsePieceHashes(&cursor, layout: front.layout, seen: &seen)
            (root, rootLine) = try parseRoot(&cursor, seen: &seen)
            signer = try parseSigner(&cursor, seen: &seen)
            signature = try parseSignature(&cursor, seen: seen)
        } else {
            (root, rootLine) = try parseRoot(&cursor, seen: &seen)
            signer = try parseSigner(&cursor, seen: &seen)
            signature = try parseSignature(&cursor, seen: seen)
            seen.insert("signature")
            pieceHashes = try parsePieceHashes(&cursor, layout: front.layout, seen: &seen)
        }
        guard root == RootHash.compute(layout: front.layout, pieceHashes: pieceHashes) else {
            throw MTorrentError(.rootMismatch, "the root hash does not match the piece hashes", line: rootLine)
        }
        try cursor.expectEnd()
        let content = MTorrent.Content(
            version: front.version, trackers: front.trackers, name: front.name, layout: front.layout, pieceHashes: pieceHashes, root: root, signer: signer
        )
        let torrent = MTorrent(content: content, signature: signature)
        guard (try? torrent.serialized()) == bytes else { throw nonCanonical() }
        if let header = torrent.signedHeader, header.bytes.count > SignedHeader.maximumBytes {
            throw MTorrentError(.tooLarge, "the signed header has \(header.bytes.count) bytes, more than the limit of \(SignedHeader.maximumBytes)")
        }
        return torrent
    }

    static func parseSignedHeader(_ bytes: [UInt8]) throws(MTorrentError) -> SignedHeader {
        var cursor = try LineCursor(bytes, limit: SignedHeader.maximumBytes)
        var seen: Set<String> = []
        let front = try parseFront(&cursor, seen: &seen)
        guard front.version == 2 else {
            throw MTorrentError(.unknownVersion, "only a version 2 .mtorrent has a signed header", line: 1)
        }
        let (root, _) = try parseRoot(&cursor, seen: &seen)
        let signer = try parseSigner(&cursor, seen: &seen)
        let signature = try parseSignature(&cursor, seen: seen)
        try cursor.expectEnd()
        let content = MTorrent.Content(version: 2, trackers: front.trackers, name: front.name, layout: front.layout, pieceHashes: [], root: root, signer: signer)
        guard (try? content.signedBytes() + MTorrent.signatureLine(signature)) == bytes else { throw nonCanonical() }
        return SignedHeader(trackers: front.trackers, name: front.name, layout: front.layout, root: root, signer: signer, signature: signature, bytes: bytes)
    }

    private static func nonCanonical() -> MTorrentError {
        MTorrentError(.nonCanonical, "the text is not in its one canonical form (line endings, spacing or encoding differ)")
    }

    /// The fields from `mtorrent` to `hash-algorithm`, the same in both versions.
    private static func parseFront(
        _ cursor: inout LineCursor, seen: inout Set<String>
    ) throws(MTorrentError) -> (version: Int, trackers: [TrackerAddress], name: String, layout: PieceLayout) {
        let (versionText, versionLine) = try cursor.field("mtorrent", seen: seen)
        guard let version = MTorrent.readableVersions.first(where: { String($0) == versionText }) else {
            throw MTorrentError(
                .unknownVersion, "format version '\(versionText.prefix(20))' is not supported; this program reads versions 1 and 2", line: versionLine
            )
        }
        seen.insert("mtorrent")
        var trackers: [TrackerAddress] = []
        while cursor.nextKey == "tracker" {
            let (value, line) = try cursor.field("tracker", seen: seen)
            guard trackers.count < MTorrent.maximumTrackers else {
                throw MTorrentError(.badValue, "more than \(MTorrent.maximumTrackers) trackers", line: line)
            }
            guard let tracker = TrackerAddress(value) else {
                throw MTorrentError(.badValue, "'\(value)' is not a tracker address (host:port)", line: line)
            }
            guard !trackers.contains(tracker) else { throw MTorrentError(.duplicateField, "tracker \(tracker) is listed twice", line: line) }
            trackers.append(tracker)
        }
        guard !trackers.isEmpty else { throw cursor.misplaced(expected: "tracker", seen: seen) }
        seen.insert("tracker")
        let (nameText, nameLine) = try cursor.field("name", seen: seen)
        let name = String(nameText)
        if let problem = FileNameRules.problem(with: name) { throw MTorrentError(.badName, problem, line: nameLine) }
        seen.insert("name")
        let (sizeText, sizeLine) = try cursor.field("size", seen: seen)
        guard let size = canonicalNumber(sizeText) else { throw MTorrentError(.badValue, "the size is not a whole number", line: sizeLine) }
        seen.insert("size")
        let (pieceSizeText, pieceSizeLine) = try cursor.field("piece-size", seen: seen)
        guard let pieceSize = canonicalNumber(pieceSizeText), pieceSize <= UInt64(Int32.max) else {
            throw MTorrentError(.badValue, "the piece size is not a whole number", line: pieceSizeLine)
        }
        let layout: PieceLayout
        do {
            layout = try PieceLayout(fileSize: size, pieceSize: Int(pieceSize))
        } catch {
            throw MTorrentError(.badValue, error.description, line: pieceSizeLine)
        }
        seen.insert("piece-size")
        let (algorithm, algorithmLine) = try cursor.field("hash-algorithm", seen: seen)
        guard algorithm == MTorrent.hashAlgorithm else {
            throw MTorrentError(.badValue, "hash algorithm '\(algorithm)' is not supported; use \(MTorrent.hashAlgorithm)", line: algorithmLine)
        }
        seen.insert("hash-algorithm")
        return (version, trackers, name, layout)
    }

    private static func parsePieceHashes(_ cursor: inout LineCursor, layout: PieceLayout, seen: inout Set<String>) throws(MTorrentError) -> [[UInt8]] {
        var pieceHashes: [[UInt8]] = []
        pieceHashes.reserveCapacity(layout.pieceCount)
        while cursor.nextKey == "piece" {
            let (value, line) = try cursor.field("piece", seen: seen)
            guard pieceHashes.count < layout.pieceCount else {
                throw MTorrentError(.pieceCountMismatch, "more piece hashes than the \(layout.pieceCount) pieces a \(layout.fileSize)-byte file has", line: line)
            }
            pieceHashes.append(try digest(value, line: line))
        }
        guard pieceHashes.count == layout.pieceCount else {
            throw MTorrentError(
                .pieceCountMismatch, "\(pieceHashes.count) piece hashes for the \(layout.pieceCount) pieces a \(layout.fileSize)-byte file has", line: cursor.lineNumber
            )
        }
        seen.insert("piece")
        return pieceHashes
    }

    private static func parseRoot(_ cursor: inout LineCursor, seen: inout Set<String>) throws(MTorrentError) -> ([UInt8], Int) {
        let (rootText, rootLine) = try cursor.field("root", seen: seen)
        seen.insert("root")
        return (try digest(rootText, line: rootLine), rootLine)
    }

    private static func parseSigner(_ cursor: inout LineCursor, seen: inout Set<String>) throws(MTorrentError) -> Certificate {
        let signerLine = cursor.lineNumber
        try cursor.bareField("signer", seen: seen)
        seen.insert("signer")
        return try certificate(&cursor, startingAt: signerLine + 1)
    }

    private static func parseSignature(_ cursor: inout LineCursor, seen: Set<String>) throws(MTorrentError) -> [UInt8] {
        let (signatureHex, signatureLine) = try cursor.field("signature", seen: seen)
        guard let signature = Hex.decode(signatureHex), !signature.isEmpty, signature.count <= maximumSignatureBytes else {
            throw MTorrentError(.badValue, "the signature is not lowercase hex of at most \(maximumSignatureBytes) bytes", line: signatureLine)
        }
        return signature
    }

    private static func certificate(_ cursor: inout LineCursor, startingAt line: Int) throws(MTorrentError) -> Certificate {
        var lines: [Substring] = []
        while let next = cursor.nextLine() {
            lines.append(next)
            if next == "-----END CERTIFICATE-----" { break }
            guard lines.count < maximumCertificateLines else {
                throw MTorrentError(.badCertificate, "the signer's certificate is longer than \(maximumCertificateLines) lines", line: line)
            }
        }
        guard lines.first == "-----BEGIN CERTIFICATE-----", lines.last == "-----END CERTIFICATE-----" else {
            throw MTorrentError(.badCertificate, "the signer's certificate is not one PEM CERTIFICATE block", line: line)
        }
        do {
            return try Certificate(pemEncoded: lines.joined(separator: "\n"))
        } catch {
            throw MTorrentError(.badCertificate, "the signer's certificate cannot be read: \(error)", line: line)
        }
    }

    private static func digest(_ text: Substring, line: Int) throws(MTorrentError) -> [UInt8] {
        guard text.utf8.count == 2 * SHA256Digest.length, let bytes = Hex.decode(text) else {
            throw MTorrentError(.badValue, "'\(text.prefix(80))' is not a SHA-256 digest in lowercase hex", line: line)
        }
        return bytes
    }

    /// A decimal number without sign, spaces or leading zeros.
    private static func canonicalNumber(_ text: Substring) -> UInt64? {
        guard !text.isEmpty, text.count <= 20, text.utf8.allSatisfy({ (0x30...0x39).contains($0) }),
              text == "0" || text.first != "0"
        else { return nil }
        return UInt64(text)
    }

    /// Walks the lines of the text, each ended by a line feed.
    struct LineCursor {
        private let lines: [Substring]
        private var index = 0
        private let endsWithNewline: Bool

        /// Checks the size and the encoding, then splits the text into lines.
        init(_ bytes: [UInt8], limit: Int) throws(MTorrentError) {
            guard bytes.count <= limit else {
                throw MTorrentError(.tooLarge, "the text has \(bytes.count) bytes, more than the limit of \(limit)")
            }
            guard let text = String(validating: bytes, as: UTF8.self) else {
                throw MTorrentError(.notText, "the text is not UTF-8")
            }
            var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
            endsWithNewline = lines.last == ""
            if endsWithNewline { lines.removeLast() }
            self.lines = lines
        }

        /// The 1-based number of the next line.
        var lineNumber: Int { index + 1 }

        /// The key of the next line, if there is one.
        var nextKey: Substring? {
            guard index < lines.count else { return nil }
            let line = lines[index]
            return line.firstIndex(of: " ").map { line[..<$0] } ?? line
        }

        mutating func nextLine() -> Substring? {
            guard index < lines.count else { return nil }
            defer { index += 1 }
            return lines[index]
        }

        /// Reads `key value` and returns the value and its line number.
        mutating func field(_ key: String, seen: Set<String>) throws(MTorrentError) -> (Substring, Int) {
            guard nextKey == Substring(key) else { throw misplaced(expected: key, seen: seen) }
            let number = lineNumber
            let line = nextLine()!
            guard line.count > key.count + 1 else { throw MTorrentError(.badValue, "'\(key)' has no value", line: number) }
            return (line.dropFirst(key.count + 1), number)
        }

        /// Reads a line that is exactly `key`.
        mutating func bareField(_ key: String, seen: Set<String>) throws(MTorrentError) {
            guard nextKey == Substring(key) else { throw misplaced(expected: key, seen: seen) }
            let number = lineNumber
            guard nextLine()! == Substring(key) else { throw MTorrentError(.badValue, "'\(key)' takes no value on its line", line: number) }
        }

        /// The error for a line that is not the expected field: the expected field is missing, or
        /// comes later (out of order), or the line repeats an earlier field or names an unknown one.
        func misplaced(expected: String, seen: Set<String>) -> MTorrentError {
            guard let key = nextKey.map(String.init) else {
                return MTorrentError(.missingField, "the file ends where '\(expected)' should be", line: lineNumber)
            }
            if seen.contains(key) {
                return MTorrentError(.duplicateField, "'\(key)' appears again where '\(expected)' should be", line: lineNumber)
            }
            guard MTorrentParser.fieldOrder.contains(key) else {
                return MTorrentError(.unknownField, "unknown field '\(key.prefix(40))' where '\(expected)' should be", line: lineNumber)
            }
            let expectedLater = lines[index...].contains { $0 == expected || $0.hasPrefix(expected + " ") }
            if expectedLater {
                return MTorrentError(.misplacedField, "'\(key)' is out of order: '\(expected)' should come before it", line: lineNumber)
            }
            return MTorrentError(.missingField, "'\(expected)' is missing before '\(key)'", line: lineNumber)
        }

        /// Fails unless every line has been read and the text ended with a line feed.
        func expectEnd() throws(MTorrentError) {
            guard index == lines.count else {
                throw MTorrentError(.trailingData, "unexpected data after the last field", line: lineNumber)
            }
            guard endsWithNewline else {
                throw MTorrentError(.nonCanonical, "the last line does not end with a line feed", line: lineNumber - 1)
            }
        }
    }
}
