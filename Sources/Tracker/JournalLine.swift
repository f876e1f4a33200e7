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
    case claim(file: RootKey, size: UInt64, signer: String, signerFingerprint: String, fileName: String)
    /// `hold <root> <signer> <host:port> <peer> <fingerprint>`
    case hold(file: RootKey, signer: String, address: String, name: String, fingerprint: String)
    /// `share <root> <size> <host:port> <peer> <fingerprint> <file name>` (before proofs: the
    /// first sharer of a root holds its claim, later ones hold under it)
    case share(file: RootKey, size: UInt64, address: String, name: String, fingerprint: String, fileName: String)
    /// `file <root> <size> <owner> <file name>` (before proofs: a root's owner, holding no entry)
    case legacyFile(file: RootKey, size: UInt64, owner: String, fileName: String)
    /// `remove <root> <host:port> <peer> <fingerprint>`
    case remove(file: RootKey, address: String, name: String, fingerprint: String)
    /// `remove <root> <host:port> <peer>` (older form)
    case legacyRemove(file: RootKey, address: String, name: String)
    /// `withdraw <root> <signer>` (one signer's claim) or `withdraw <root>` (by an admin, for everyone)
    case withdraw(file: RootKey, signer: String?)
    /// `allow <root>`
    case allow(file: RootKey)
    /// `leave <host:port> <peer> <fingerprint>`
    case leave(address: String, name: String, fingerprint: String)
    /// `leave <host:port> <peer>` (older form)
    case legacyLeave(address: String, name: String)

    /// Longest line a journal holds: a request line plus the peer's name and fingerprint.
    static let maximumLength = 4096

    /// Parses one line (without its line feed); nil if it is not a well-formed journal line.
    init?(_ line: Substring) {
        let verb = line.utf8.prefix { $0 != UInt8(ascii: " ") }
        // The file name, last on claim, file and share lines, may contain spaces.
        let splits = verb.elementsEqual("claim".utf8) ? 5 : verb.elementsEqual("file".utf8) ? 4 : 6
        let words = Self.words(line, maxSplits: splits)
        guard words.count >= 2 else { return nil }
        if words[0] == "leave" {
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
        guard let file = RootKey(hex: words[1]) else { return nil }
        switch (words[0], words.count) {
        case ("claim", 6):
            guard let size = UInt64(words[2]), Self.areWords(words[3...3]), Self.isFingerprint(words[4]), !words[5].isEmpty else { return nil }
            self = .claim(file: file, size: size, signer: String(words[3]), signerFingerprint: String(words[4]), fileName: String(words[5]))
        case ("hold", 6):
            guard Self.areWords(words[2...4]), Self.isFingerprint(words[5]) else { return nil }
            self = .hold(file: file, signer: String(words[2]), address: String(words[3]), name: String(words[4]), fingerprint: String(words[5]))
        case ("share", 7):
            guard let size = UInt64(words[2]), Self.areWords(words[3...4]), Self.isFingerprint(words[5]), !words[6].isEmpty else { return nil }
            self = .share(file: file, size: size, address: String(words[3]), name: String(words[4]), fingerprint: String(words[5]), fileName: String(words[6]))
        case ("file", 5):
            guard let size = UInt64(words[2]), Self.areWords(words[3...3]), !words[4].isEmpty else { return nil }
            self = .legacyFile(file: file, size: size, owner: String(words[3]), fileName: String(words[4]))
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

    /// The words of `line` split at single spaces, empty words kept (bytes, not characters:
    /// journals are long).
    private static func words(_ line: Substring, maxSplits: Int) -> [Substring] {
        var words: [Substring] = []
        words.reserveCapacity(maxSplits + 1)
        let bytes = line.utf8
        var start = bytes.startIndex
        var index = start
        while index != bytes.endIndex, words.count < maxSplits {
            if bytes[index] == UInt8(ascii: " ") {
                words.append(line[start..<index])
                start = bytes.index(after: index)
            }
            index = bytes.index(after: index)
        }
        words.append(line[start...])
        return words
    }

    /// 64 lowercase hex digits, or `-` (an ownership-only line of an earlier format).
    private static func isFingerprint(_ word: Substring) -> Bool {
        word == "-" || (word.utf8.count == 64 && word.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) })
    }

    /// Every word non-empty (two spaces in a row are damage, not an empty name).
    private static func areWords(_ words: ArraySlice<Substring>) -> Bool {
        words.allSatisfy { !$0.isEmpty }
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
