import Wire

/// One line of `seeders.txt` (docs/PROTOCOL.md), parsed or to be written.
///
/// A root has one claim per signer (`claim`), and holders announce under a signer (`hold`), keyed
/// by their certificate fingerprint. Older journals are still read: `share` lines from before
/// shares carried proof, and `remove`/`leave` lines from before holders were keyed by fingerprint
/// (`legacyRemove`, `legacyLeave`).
enum JournalLine: Equatable {
    /// `claim <root> <size> <signer> <signer fingerprint> <file name>`
    case claim(file: FileID, size: UInt64, signer: String, signerFingerprint: String, fileName: String)
    /// `hold <root> <signer> <host:port> <peer> <fingerprint>`
    case hold(file: FileID, signer: String, address: String, name: String, fingerprint: String)
    /// `share <root> <size> <host:port> <peer> <fingerprint> <file name>` (before proofs: the
    /// first sharer of a root holds its claim, later ones hold under it)
    case share(file: FileID, size: UInt64, address: String, name: String, fingerprint: String, fileName: String)
    /// `remove <root> <host:port> <peer> <fingerprint>`
    case remove(file: FileID, address: String, name: String, fingerprint: String)
    /// `remove <root> <host:port> <peer>` (older form)
    case legacyRemove(file: FileID, address: String, name: String)
    /// `withdraw <root> <signer>` (one signer's claim) or `withdraw <root>` (by an admin, for everyone)
    case withdraw(file: FileID, signer: String?)
    /// `allow <root>`
    case allow(file: FileID)
    /// `leave <host:port> <peer> <fingerprint>`
    case leave(address: String, name: String, fingerprint: String)
    /// `leave <host:port> <peer>` (older form)
    case legacyLeave(address: String, name: String)

    /// Longest line a journal holds: a request line plus the peer's name and fingerprint.
    static let maximumLength = 4096

    /// Parses one line (without its line feed); nil if it is not a well-formed journal line.
    init?(_ line: Substring) {
        let verb = line.prefix { $0 != " " }
        // The file name, last on claim and share lines, may contain spaces.
        let splits = verb == "claim" ? 5 : 6
        let words = line.split(separator: " ", maxSplits: splits, omittingEmptySubsequences: false)
        guard words.count >= 2 else { return nil }
        if verb == "leave" {
            switch words.count {
            case 4 where Self.isFingerprint(words[3]):
                self = .leave(address: String(words[1]), name: String(words[2]), fingerprint: String(words[3]))
            case 3:
                self = .legacyLeave(address: String(words[1]), name: String(words[2]))
            default:
                return nil
            }
            guard Self.areWords(words.dropFirst()) else { return nil }
            return
        }
        guard let file = FileID(hex: words[1]) else { return nil }
        switch (verb, words.count) {
        case ("claim", 6):
            guard let size = UInt64(words[2]), Self.areWords(words[3...3]), Self.isFingerprint(words[4]), !words[5].isEmpty else { return nil }
            self = .claim(file: file, size: size, signer: String(words[3]), signerFingerprint: String(words[4]), fileName: String(words[5]))
        case ("hold", 6):
            guard Self.areWords(words[2...4]), Self.isFingerprint(words[5]) else { return nil }
            self = .hold(file: file, signer: String(words[2]), address: String(words[3]), name: String(words[4]), fingerprint: String(words[5]))
        case ("share", 7):
            guard let size = UInt64(words[2]), Self.areWords(words[3...4]), Self.isFingerprint(words[5]), !words[6].isEmpty else { return nil }
            self = .share(file: file, size: size, address: String(words[3]), name: String(words[4]), fingerprint: String(words[5]), fileName: String(words[6]))
        case ("remove", 5):
            guard Self.areWords(words[2...3]), Self.isFingerprint(words[4]) else { return nil }
            self = .remove(file: file, address: String(words[2]), name: String(words[3]), fingerprint: String(words[4]))
        case ("remove", 4):
            guard Self.areWords(words[2...3]) else { return nil }
            self = .legacyRemove(file: file, address: String(words[2]), name: String(words[3]))
        case ("withdraw", 2):
            self = .withdraw(file: file, signer: nil)
        case ("withdraw", 3):
            guard Self.areWords(words[2...2]) else { return nil }
            self = .withdraw(file: file, signer: String(words[2]))
        case ("allow", 2):
            self = .allow(file: file)
        default:
            return nil
        }
    }

    /// 64 lowercase hex digits, or `-` (an ownership-only line of an earlier format).
    private static func isFingerprint(_ word: Substring) -> Bool {
        word == "-" || (word.utf8.count == 64 && word.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) })
    }

    /// Every word non-empty (two spaces in a row are damage, not an empty name).
    private static func areWords(_ words: ArraySlice<Substring>) -> Bool {
        words.allSatisfy { !$0.isEmpty }
    }

    /// The line as written to the journal, without its line feed.
    var text: String {
        switch self {
        case .claim(let file, let size, let signer, let signerFingerprint, let fileName):
            return "claim \(file) \(size) \(signer) \(signerFingerprint) \(fileName)"
        case .hold(let file, let signer, let address, let name, let fingerprint): return "hold \(file) \(signer) \(address) \(name) \(fingerprint)"
        case .share(let file, let size, let address, let name, let fingerprint, let fileName):
            return "share \(file) \(size) \(address) \(name) \(fingerprint) \(fileName)"
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
