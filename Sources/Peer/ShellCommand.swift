import Foundation

/// One line typed at the peer's shell, read into a command: words split the way a POSIX shell
/// splits them (single and double quotes, backslash escapes), then checked against each
/// command's arity. Any line ends in a command, `nil` (nothing to do) or a ``CommandFailure``.
public enum ShellCommand: Equatable, Sendable {
    case share(file: String, mtorrent: String)
    case get(mtorrent: String, saveTo: String)
    case remove(mtorrent: String)
    case allow(mtorrent: String)
    case status
    case help
    case exit

    /// Longest line read, in UTF-8 bytes; a longer one is refused rather than split.
    public static let maximumLineBytes = 16 * 1024

    /// Every command with its words, in the order `help` lists them.
    public static let usages: [(name: String, usage: String)] = [
        ("share", "share <file> <mtorrent>"),
        ("get", "get <mtorrent> <save_location>"),
        ("remove", "remove <mtorrent>"),
        ("allow", "allow <mtorrent>"),
        ("status", "status"),
        ("help", "help"),
        ("exit", "exit"),
    ]

    /// The one-line answer to `help`.
    public static var helpText: String {
        "commands: " + usages.map(\.usage).joined(separator: " | ")
            + "; quote names with spaces (\"my file.bin\" or 'my file.bin'); a save location that is a folder receives the .mtorrent's file name"
    }

    /// Reads one line; `nil` for a line with no words.
    public static func parse(_ line: String) throws(CommandFailure) -> ShellCommand? {
        guard line.utf8.count <= maximumLineBytes else {
            throw CommandFailure(.invalidArguments, "the line is longer than \(maximumLineBytes) bytes")
        }
        let words = try ShellWords.split(line)
        guard let name = words.first else { return nil }
        let arguments = Array(words.dropFirst())
        switch (name, arguments.count) {
        case ("share", 2): return .share(file: arguments[0], mtorrent: arguments[1])
        case ("get", 2): return .get(mtorrent: arguments[0], saveTo: arguments[1])
        case ("remove", 1): return .remove(mtorrent: arguments[0])
        case ("allow", 1): return .allow(mtorrent: arguments[0])
        case ("status", 0): return .status
        case ("help", 0): return .help
        case ("exit", 0): return .exit
        default:
            if let usage = usages.first(where: { $0.name == name })?.usage {
                throw CommandFailure(.invalidArguments, "usage: \(usage) (\(arguments.count) argument(s) given)")
            }
            throw CommandFailure(.unknownCommand, unknownMessage(for: name))
        }
    }

    /// The files and folders the command names, as standardized absolute paths relative to
    /// `folder`: two commands naming one of the same paths run one after the other.
    public func paths(relativeTo folder: String) -> Set<String> {
        let names: [String]
        switch self {
        case .share(let file, let mtorrent): names = [file, mtorrent]
        case .get(let mtorrent, let save): names = [mtorrent, save]
        case .remove(let mtorrent), .allow(let mtorrent): names = [mtorrent]
        case .status, .help, .exit: names = []
        }
        return Set(names.map { name in
            let base = name.hasPrefix("/") ? URL(fileURLWithPath: name) : URL(fileURLWithPath: folder).appendingPathComponent(name)
            return base.standardized.path
        })
    }

    private static func unknownMessage(for name: String) -> String {
        let shown = name.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7f } ? name.debugDescription : "'\(name)'"
        let message = "\(shown) is not a command"
        if let near = usages.map(\.name).min(by: { editDistance(name, $0) < editDistance(name, $1) }), editDistance(name, near) <= 2 {
            return message + "; did you mean '\(near)'? Type help for the list"
        }
        return message + "; type help for the list"
    }

    /// Levenshtein distance, stopping early for words far longer than any command.
    private static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a.unicodeScalars), b = Array(b.unicodeScalars)
        guard abs(a.count - b.count) <= 2 else { return Int.max }
        var previous = Array(0...b.count)
        for (i, x) in a.enumerated() {
            var current = [i + 1]
            for (j, y) in b.enumerated() {
                current.append(min(previous[j + 1] + 1, current[j] + 1, previous[j] + (x == y ? 0 : 1)))
            }
            previous = current
        }
        return previous[b.count]
    }
}

/// Splits a line into words as a POSIX shell does, without any expansion: blanks separate
/// words; `'…'` keeps everything literally; `"…"` keeps everything but `\"`, `\\`, `\$` and
/// `` \` ``; outside quotes a backslash keeps the next character. An open quote or a trailing
/// backslash is an error.
public enum ShellWords {
    public static func split(_ line: String) throws(CommandFailure) -> [String] {
        enum Quote { case none, single, double }
        var words: [String] = []
        var word = String.UnicodeScalarView()
        var inWord = false
        var quote = Quote.none
        var escaped = false
        for scalar in line.unicodeScalars {
            if escaped {
                if quote == .double, !"\"\\$`".unicodeScalars.contains(scalar) { word.append("\\") }
                word.append(scalar)
                escaped = false
                continue
            }
            switch (quote, scalar) {
            case (.single, "'"): quote = .none
            case (.single, _): word.append(scalar)
            case (.double, "\""): quote = .none
            case (.double, "\\"): escaped = true
            case (.double, _): word.append(scalar)
            case (.none, " "), (.none, "\t"), (.none, "\r"), (.none, "\n"):
                if inWord { words.append(String(word)) }
                word = String.UnicodeScalarView()
                inWord = false
            case (.none, "'"): quote = .single; inWord = true
            case (.none, "\""): quote = .double; inWord = true
            case (.none, "\\"): escaped = true; inWord = true
            case (.none, _): word.append(scalar); inWord = true
            }
        }
        if escaped { throw CommandFailure(.invalidArguments, "the line ends with a lone backslash; write \\\\ for a backslash") }
        switch quote {
        case .single: throw CommandFailure(.invalidArguments, "a single quote (') is not closed")
        case .double: throw CommandFailure(.invalidArguments, "a double quote (\") is not closed")
        case .none: break
        }
        if inWord { words.append(String(word)) }
        return words
    }
}
