import Wire

/// One line of `seeders.txt` (docs/PROTOCOL.md), parsed or to be written.
///
/// Holders are keyed by certificate fingerprint. Lines written before that keyed holders by
/// address and peer name; they are still read (`legacyRemove`, `legacyLeave`).
enum JournalLine: Equatable {
    /// `share <root> <size> <host:port> <peer> <fingerprint> <file name>`
    case share(file: RootKey, size: UInt64, address: String, name: String, fingerprint: String, fileName: String)
    /// `file <root> <size> <owner> <file name>`: a file and its owner, with no holder.
    case file(file: RootKey, size: UInt64, owner: String, fileName: String)
    /// `remove <root> <host:port> <peer> <fingerprint>`
    case remove(file: RootKey, address: String, name: String, fingerprint: String)
    /// `remove <root> <host:port> <peer>` (older form)
    case legacyRemove(file: RootKey, address: String, name: String)
    /// `withdraw <root>`
    case withdraw(file: RootKey)
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
        let words = Self.words(line, maxSplits: 6)
        guard let verb = words.first else { return nil }
        switch (verb, words.count) {
        case ("share", 7):
            guard let file = RootKey(hex: words[1]), let size = UInt64(words[2]), Self.isFingerprint(words[5]), !words[6].isEmpty else { return nil }
            self = .share(file: file, size: size, address: String(words[3]), name: String(words[4]), fingerprint: String(words[5]), fileName: String(words[6]))
        case ("file", 5...):
            let words = Self.words(line, maxSplits: 4)
            guard let file = RootKey(hex: words[1]), let size = UInt64(words[2]) else { return nil }
            self = .file(file: file, size: size, owner: String(words[3]), fileName: String(words[4]))
        case ("remove", 5):
            guard let file = RootKey(hex: words[1]), Self.isFingerprint(words[4]) else { return nil }
            self = .remove(file: file, address: String(words[2]), name: String(words[3]), fingerprint: String(words[4]))
        case ("remove", 4):
            guard let file = RootKey(hex: words[1]) else { return nil }
            self = .legacyRemove(file: file, address: String(words[2]), name: String(words[3]))
        case ("withdraw", 2):
            guard let file = RootKey(hex: words[1]) else { return nil }
            self = .withdraw(file: file)
        case ("allow", 2):
            guard let file = RootKey(hex: words[1]) else { return nil }
            self = .allow(file: file)
        case ("leave", 4):
            guard Self.isFingerprint(words[3]) else { return nil }
            self = .leave(address: String(words[1]), name: String(words[2]), fingerprint: String(words[3]))
        case ("leave", 3):
            self = .legacyLeave(address: String(words[1]), name: String(words[2]))
        default:
            return nil
        }
    }

    /// The words of `line` split at single spaces (bytes, not characters: journals are long).
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

    /// 64 lowercase hex digits, or `-` (an ownership-only line of the earlier format).
    private static func isFingerprint(_ word: Substring) -> Bool {
        word == "-" || (word.utf8.count == 64 && word.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) })
    }

    /// The line as written to the journal, without its line feed.
    var text: String {
        switch self {
        case .share(let file, let size, let address, let name, let fingerprint, let fileName):
            return "share \(file) \(size) \(address) \(name) \(fingerprint) \(fileName)"
        case .file(let file, let size, let owner, let fileName): return "file \(file) \(size) \(owner) \(fileName)"
        case .remove(let file, let address, let name, let fingerprint): return "remove \(file) \(address) \(name) \(fingerprint)"
        case .legacyRemove(let file, let address, let name): return "remove \(file) \(address) \(name)"
        case .withdraw(let file): return "withdraw \(file)"
        case .allow(let file): return "allow \(file)"
        case .leave(let address, let name, let fingerprint): return "leave \(address) \(name) \(fingerprint)"
        case .legacyLeave(let address, let name): return "leave \(address) \(name)"
        }
    }
}
