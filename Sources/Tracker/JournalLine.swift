import Foundation
import Wire

/// One line of `seeders.txt` (docs/PROTOCOL.md), parsed or to be written.
///
/// A root has one claim per signer (`claim`), and holders announce under a signer (`hold`), keyed
/// by their certificate fingerprint. Older journals are still read: `share` lines from before
/// shares carried proof, `file` lines (a root's owner with no holder) from the same time, and
/// `remove`/`leave` lines from before holders were keyed by fingerprint (`legacyRemove`,
/// `legacyLeave`).
enum JournalLine: Equatable {
    /// `claim <root> <size> <signer> <signer fingerprint> <file name>`
    case claim(file: RootKey, size: UInt64, signer: String, signerFingerprint: Fingerprint, fileName: String)
    /// `hold <root> <signer> <host:port> <peer> <fingerprint>`
    case hold(file: RootKey, signer: String, address: String, name: String, fingerprint: Fingerprint)
    /// `share <root> <size> <host:port> <peer> <fingerprint> <file name>` (before proofs: the
    /// first sharer of a root holds its claim, later ones hold under it)
    case share(file: RootKey, size: UInt64, address: String, name: String, fingerprint: Fingerprint, fileName: String)
    /// `file <root> <size> <owner> <file name>` (before proofs: a root's owner, holding no entry)
    case legacyFile(file: RootKey, size: UInt64, owner: String, fileName: String)
    /// `remove <root> <host:port> <peer> <fingerprint>`
    case remove(file: RootKey, address: String, name: String, fingerprint: Fingerprint)
    /// `remove <root> <host:port> <peer>` (older form)
    case legacyRemove(file: RootKey, address: String, name: String)
    /// `withdraw <root> <signer>` (one signer's claim) or `withdraw <root>` (by an admin, for everyone)
    case withdraw(file: RootKey, signer: String?)
    /// `allow <root>`
    case allow(file: RootKey)
    /// `leave <host:port> <peer> <fingerprint>`
    case leave(address: String, name: String, fingerprint: Fingerprint)
    /// `leave <host:port> <peer>` (older form)
    case legacyLeave(address: String, name: String)

    /// Longest line a journal holds: a request line plus the peer's name and fingerprint.
    static let maximumLength = 4096

    /// Parses the bytes of one line (without its line feed); nil if they are not a well-formed
    /// journal line. Words are split at single spaces (two in a row are damage, not an empty
    /// name); the file name, last on `claim`, `file` and `share` lines, may hold spaces.
    init?(_ line: UnsafeRawBufferPointer) {
        guard line.count <= Self.maximumLength else { return nil }
        var words = Words(line)
        guard let verb = words.next() else { return nil }
        if verb.spells("leave") {
            guard let address = words.nonEmpty(), let name = words.nonEmpty() else { return nil }
            if words.isAtEnd {
                self = .legacyLeave(address: String(address), name: String(name))
                return
            }
            guard let fingerprint = words.next().flatMap(Fingerprint.init(text:)), words.isAtEnd else { return nil }
            self = .leave(address: String(address), name: String(name), fingerprint: fingerprint)
            return
        }
        guard let file = words.next().flatMap(RootKey.init(hex:)) else { return nil }
        switch Verb(verb) {
        case .claim:
            guard let size = words.next().flatMap(Self.size), let signer = words.nonEmpty(),
                  let fingerprint = words.next().flatMap(Fingerprint.init(text:)), let fileName = words.fileName() else { return nil }
            self = .claim(file: file, size: size, signer: String(signer), signerFingerprint: fingerprint, fileName: String(fileName))
        case .hold:
            guard let signer = words.nonEmpty(), let address = words.nonEmpty(), let name = words.nonEmpty(),
                  let fingerprint = words.next().flatMap(Fingerprint.init(text:)), words.isAtEnd else { return nil }
            self = .hold(file: file, signer: String(signer), address: String(address), name: String(name), fingerprint: fingerprint)
        case .share:
            guard let size = words.next().flatMap(Self.size), let address = words.nonEmpty(), let name = words.nonEmpty(),
                  let fingerprint = words.next().flatMap(Fingerprint.init(text:)), let fileName = words.fileName() else { return nil }
            self = .share(file: file, size: size, address: String(address), name: String(name), fingerprint: fingerprint, fileName: String(fileName))
        case .file:
            guard let size = words.next().flatMap(Self.size), let owner = words.nonEmpty(), let fileName = words.fileName() else { return nil }
            self = .legacyFile(file: file, size: size, owner: String(owner), fileName: String(fileName))
        case .remove:
            guard let address = words.nonEmpty(), let name = words.nonEmpty() else { return nil }
            if words.isAtEnd {
                self = .legacyRemove(file: file, address: String(address), name: String(name))
                return
            }
            guard let fingerprint = words.next().flatMap(Fingerprint.init(text:)), words.isAtEnd else { return nil }
            self = .remove(file: file, address: String(address), name: String(name), fingerprint: fingerprint)
        case .withdraw:
            if words.isAtEnd {
                self = .withdraw(file: file, signer: nil)
                return
            }
            guard let signer = words.nonEmpty(), words.isAtEnd else { return nil }
            self = .withdraw(file: file, signer: String(signer))
        case .allow:
            guard words.isAtEnd else { return nil }
            self = .allow(file: file)
        case nil:
            return nil
        }
    }

    /// The verbs of lines that name a root.
    private enum Verb {
        case claim, hold, share, file, remove, withdraw, allow

        /// Each verb as it is spelled, the most frequent first.
        private static let spellings: [(StaticString, Verb)] = [
            ("hold", .hold), ("claim", .claim), ("remove", .remove), ("withdraw", .withdraw), ("allow", .allow), ("share", .share), ("file", .file),
        ]

        init?(_ word: UnsafeRawBufferPointer) {
            guard let verb = Self.spellings.first(where: { word.spells($0.0) })?.1 else { return nil }
            self = verb
        }
    }

    /// A size in decimal digits only, within 64 bits.
    private static func size(_ word: UnsafeRawBufferPointer) -> UInt64? {
        guard !word.isEmpty else { return nil }
        var value: UInt64 = 0
        for digit in word {
            guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(digit) else { return nil }
            let (times10, overflow) = value.multipliedReportingOverflow(by: 10)
            let (sum, carry) = times10.addingReportingOverflow(UInt64(digit - UInt8(ascii: "0")))
            guard !overflow, !carry else { return nil }
            value = sum
        }
        return value
    }

    /// The words of a line, read one at a time.
    private struct Words {
        private let line: UnsafeRawBufferPointer
        /// Where the next word starts; past the end once every word was read.
        private var start = 0

        init(_ line: UnsafeRawBufferPointer) {
            self.line = line
        }

        var isAtEnd: Bool { start > line.count }

        /// The next word (empty between two spaces in a row), or nil after the last.
        mutating func next() -> UnsafeRawBufferPointer? {
            guard !isAtEnd else { return nil }
            let end = line.baseAddress.flatMap { base in
                memchr(base + start, Int32(UInt8(ascii: " ")), line.count - start).map { UnsafeRawPointer($0) - base }
            } ?? line.count
            defer { start = end + 1 }
            return UnsafeRawBufferPointer(rebasing: line[start..<end])
        }

        /// The next word, or nil if there is none or it is empty.
        mutating func nonEmpty() -> UnsafeRawBufferPointer? {
            next().flatMap { $0.isEmpty ? nil : $0 }
        }

        /// The rest of the line, spaces and all, if it is not empty.
        mutating func fileName() -> UnsafeRawBufferPointer? {
            guard !isAtEnd, start < line.count else { return nil }
            defer { start = line.count + 1 }
            return UnsafeRawBufferPointer(rebasing: line[start...])
        }
    }

    /// Whether the line is of a form the journal no longer writes.
    var isEarlierFormat: Bool {
        switch self {
        case .share, .legacyFile, .legacyRemove, .legacyLeave: return true
        case .claim, .hold, .remove, .withdraw, .allow, .leave: return false
        }
    }

    /// The line as written to the journal, without its line feed.
    var text: String {
        switch self {
        case .claim(let file, let size, let signer, let signerFingerprint, let fileName):
            return "claim \(file) \(size) \(signer) \(signerFingerprint) \(fileName)"
        case .hold(let file, let signer, let address, let name, let fingerprint): return "hold \(file) \(signer) \(address) \(name) \(fingerprint)"
        case .share(let file, let size, let address, let name, let fingerprint, let fileName):
            return "share \(file) \(size) \(address) \(name) \(fingerprint) \(fileName)"
        case .legacyFile(let file, let size, let owner, let fileName): return "file \(file) \(size) \(owner) \(fileName)"
        case .remove(let file, let address, let name, let fingerprint): return "remove \(file) \(address) \(name) \(fingerprint)"
        case .legacyRemove(let file, let address, let name): return "remove \(file) \(address) \(name)"
        case .withdraw(let file, let signer?): return "withdraw \(file) \(signer)"
        case .withdraw(let file, nil): return "withdraw \(file)"
        case .allow(let file): return "allow \(file)"
        case .leave(let address, let name, let fingerprint): return "leave \(address) \(name) \(fingerprint)"
        case .legacyLeave(let address, let name): return "leave \(address) \(name)"
        }
    }
}

/// The journal's line parser as the fuzz target drives it.
public enum JournalLineCheck {
    /// Reads `line` as one line of `seeders.txt`: nil if it is refused, otherwise whether the line
    /// as the journal would write it reads back as the same line.
    public static func readsBack(_ line: [UInt8]) -> Bool? {
        guard let parsed = line.withUnsafeBytes({ JournalLine($0) }) else { return nil }
        return Array(parsed.text.utf8).withUnsafeBytes { JournalLine($0) } == parsed
    }
}

extension UnsafeRawBufferPointer {
    /// Whether these bytes are exactly `text`.
    func spells(_ text: StaticString) -> Bool {
        count == text.utf8CodeUnitCount && (count == 0 || memcmp(baseAddress!, text.utf8Start, count) == 0)
    }
}

extension String {
    /// The text of journal bytes (a stray invalid sequence reads as U+FFFD, as before bytes were parsed).
    fileprivate init(_ bytes: UnsafeRawBufferPointer) {
        self.init(decoding: bytes, as: UTF8.self)
    }
}
