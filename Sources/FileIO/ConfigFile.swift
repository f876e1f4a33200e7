/// A strict `key = value` configuration file: one setting per line, `#` starts a comment, keys are
/// lowercase words with dashes, every key at most once, and only known keys are accepted.
public struct ConfigFile: Sendable {
    public let path: String
    private let values: [String: (value: String, line: Int)]

    /// Largest configuration file accepted.
    public static let maximumSize = 256 * 1024

    /// Reads `path`, refusing unknown or repeated keys and malformed lines with their line number.
    public init(path: String, knownKeys: Set<String>) throws {
        try self.init(text: try FileIO.readText(path, limit: Self.maximumSize), path: path, knownKeys: knownKeys)
    }

    /// Reads configuration text; `path` names it in errors.
    public init(text: String, path: String, knownKeys: Set<String>) throws(ConfigFileError) {
        var values: [String: (String, Int)] = [:]
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = trimmed(raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
            if line.isEmpty { continue }
            let parts = line.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { throw ConfigFileError(path: path, line: index + 1, reason: "expected 'key = value'") }
            let key = trimmed(parts[0])
            let value = trimmed(parts[1])
            guard knownKeys.contains(key) else {
                throw ConfigFileError(path: path, line: index + 1, reason: "unknown key '\(key)'; known keys: \(knownKeys.sorted().joined(separator: ", "))")
            }
            guard values[key] == nil else { throw ConfigFileError(path: path, line: index + 1, reason: "'\(key)' is set twice") }
            guard !value.isEmpty else { throw ConfigFileError(path: path, line: index + 1, reason: "'\(key)' has no value") }
            values[key] = (value, index + 1)
        }
        self.path = path
        self.values = values
    }

    /// The text value of `key`, if set.
    public func string(_ key: String) -> String? { values[key]?.value }

    /// The whole-number value of `key` within `range`, if set.
    public func integer(_ key: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let (text, line) = values[key] else { return nil }
        guard let number = Int(text), range.contains(number) else {
            throw ConfigFileError(path: path, line: line, reason: "'\(key)' must be a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return number
    }

    /// The yes-or-no value of `key` (`yes` or `no`), if set.
    public func flag(_ key: String) throws -> Bool? {
        guard let (text, line) = values[key] else { return nil }
        switch text {
        case "yes": return true
        case "no": return false
        default: throw ConfigFileError(path: path, line: line, reason: "'\(key)' must be yes or no")
        }
    }
}

/// A configuration file that cannot be used: where, and why.
public struct ConfigFileError: Error, CustomStringConvertible {
    public let path: String
    public let line: Int
    public let reason: String

    public var description: String { "\(path) line \(line): \(reason)" }
}

/// `text` without leading and trailing spaces and tabs.
private func trimmed(_ text: some StringProtocol) -> String {
    var rest = Substring(text)
    while let first = rest.first, first == " " || first == "\t" { rest = rest.dropFirst() }
    while let last = rest.last, last == " " || last == "\t" { rest = rest.dropLast() }
    return String(rest)
}
