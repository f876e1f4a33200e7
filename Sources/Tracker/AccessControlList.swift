import FileIO
import PKI

/// Who may do what at a tracker. A rule file holds lines `allow <actions> <subject>`, where the
/// actions are a comma-separated subset of `share`, `get`, `remove`, `admin` and the subject is
/// `peer NAME`, `group NAME` or `any` (any authenticated peer); `#` starts a comment. Whatever no
/// rule allows is denied; `admin` allows everything. See config/acl.example.
public struct AccessControlList: Sendable {
    /// What a request asks to do.
    public enum Action: String, Sendable, CaseIterable {
        case share, get, remove, admin
    }

    /// Whom a rule speaks of.
    public enum Subject: Sendable, Equatable, CustomStringConvertible {
        case peer(String)
        case group(String)
        case anyPeer

        func matches(_ identity: VerifiedIdentity) -> Bool {
            switch self {
            case .peer(let name): return identity.name == name
            case .group(let group): return identity.groups.contains(group)
            case .anyPeer: return true
            }
        }

        public var description: String {
            switch self {
            case .peer(let name): return "peer \(name)"
            case .group(let group): return "group \(group)"
            case .anyPeer: return "any"
            }
        }
    }

    struct Rule: Sendable {
        let actions: Set<Action>
        let subject: Subject
        let line: Int
    }

    /// Where the rules came from, for log lines.
    public let source: String
    private let rules: [Rule]

    /// Largest rule file accepted.
    public static let maximumFileSize = 1024 * 1024

    /// Without a rule file: every authenticated peer may share, get and remove (its own entries).
    public static let withoutFile = AccessControlList(
        source: "no ACL file", rules: [Rule(actions: [.share, .get, .remove], subject: .anyPeer, line: 0)]
    )

    private init(source: String, rules: [Rule]) {
        self.source = source
        self.rules = rules
    }

    /// Parses rule text strictly; `source` names it in errors and logs.
    public init(text: String, source: String) throws(ConfigurationError) {
        var rules: [Rule] = []
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let number = index + 1
            let line = rawLine.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if words.isEmpty { continue }
            guard words[0] == "allow", words.count >= 3 else {
                throw ConfigurationError(source: source, line: number, reason: "expected 'allow <actions> <subject>'")
            }
            var actions = Set<Action>()
            for word in words[1].split(separator: ",", omittingEmptySubsequences: false) {
                guard let action = Action(rawValue: String(word)) else {
                    throw ConfigurationError(source: source, line: number, reason: "unknown action '\(word)'; use share, get, remove or admin")
                }
                actions.insert(action)
            }
            let subject: Subject
            switch (words[2], words.count) {
            case ("any", 3): subject = .anyPeer
            case ("peer", 4), ("group", 4):
                let name = String(words[3])
                if let problem = NameRules.problem(with: name, kind: String(words[2])) {
                    throw ConfigurationError(source: source, line: number, reason: problem)
                }
                subject = words[2] == "peer" ? .peer(name) : .group(name)
            default:
                throw ConfigurationError(source: source, line: number, reason: "the subject must be 'peer NAME', 'group NAME' or 'any'")
            }
            rules.append(Rule(actions: actions, subject: subject, line: number))
        }
        self.init(source: source, rules: rules)
    }

    /// Reads and parses a rule file.
    public static func load(from path: String) throws -> AccessControlList {
        try AccessControlList(text: FileIO.readText(path, limit: maximumFileSize), source: path)
    }

    /// The decision for `identity` wanting `action`, with the reason (the rule that allowed it).
    public func decide(_ action: Action, for identity: VerifiedIdentity) -> (allowed: Bool, reason: String) {
        for rule in rules where rule.subject.matches(identity) && (rule.actions.contains(action) || rule.actions.contains(.admin)) {
            return (true, rule.line == 0 ? source : "\(source) line \(rule.line) (\(rule.subject))")
        }
        return (false, "no rule in \(source) allows \(action.rawValue)")
    }
}

/// A configuration or rule file that cannot be used, with where and why.
public struct ConfigurationError: Error, CustomStringConvertible, Equatable {
    public let source: String
    public let line: Int
    public let reason: String

    public var description: String { "\(source) line \(line): \(reason)" }
}
