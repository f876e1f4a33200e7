import FileIO
import Foundation
import PKI
import NIOConcurrencyHelpers
import Wire

/// The outcome of a registry operation: a message for an OK answer or a coded refusal.
public enum RegistryOutcome: Equatable, Sendable {
    case done(String)
    case refused(code: FailureCode, message: String)
}

/// Which peers hold which file, in memory and durable in `seeders.txt`.
///
/// `seeders.txt` is a journal: every change is one appended line, fsynced before the request is
/// answered, so an answered share survives `kill -9`. On start the journal is replayed (a torn
/// last line, from a crash in mid-append, was never answered and is ignored) and rewritten
/// compactly through a temporary file, fsync and rename. Lines:
///
///     share <root> <size> <host:port> <peer> <fingerprint> <file name>
///     remove <root> <host:port> <peer>
///     withdraw <root>
///     allow <root>
///     leave <host:port> <peer>
public final class Registry: Sendable {
    struct Holder: Sendable {
        let address: String
        let name: String
        let fingerprint: String
        var lastSeen: Date
    }

    struct Entry: Sendable {
        let size: UInt64
        let name: String
        /// The peer that first shared the file: it (or an admin) may withdraw it.
        let owner: String
        var holders: [String: Holder] = [:]
        var withdrawn = false
    }

    private struct State: Sendable {
        var files: [FileID: Entry] = [:]
        var journal: AppendLog
    }

    private let state: NIOLockedValueBox<State>
    /// Holders silent for longer than this are dropped.
    public let timeToLive: TimeInterval
    public let path: String

    /// Opens (creating if needed) the registry kept in `folder/seeders.txt`.
    public init(folder: String, timeToLive: TimeInterval, now: Date = Date()) throws {
        try FileIO.makeFolder(folder, mode: 0o755)
        path = "\(folder)/seeders.txt"
        self.timeToLive = timeToLive
        var files: [FileID: Entry] = [:]
        if FileIO.exists(path) {
            let text = try FileIO.readText(path, limit: 512 * 1024 * 1024)
            var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
            // The last element is empty when the file ends with a line feed; otherwise it is a torn line.
            lines.removeLast()
            for line in lines { Self.replay(line, into: &files, now: now) }
        }
        try FileIO.replaceAtomically(path, bytes: Array(Self.snapshot(files).map { $0 + "\n" }.joined().utf8), mode: 0o644)
        state = NIOLockedValueBox(State(files: files, journal: try AppendLog(path: path)))
    }

    /// Number of files and of holder entries, for the start-up log line.
    public var counts: (files: Int, holders: Int) {
        state.withLockedValue { state in (state.files.count, state.files.values.reduce(0) { $0 + $1.holders.count }) }
    }

    public func share(file: FileID, size: UInt64, name: String, address: String, identity: VerifiedIdentity, now: Date = Date()) throws -> RegistryOutcome {
        try state.withLockedValue { state in
            if let entry = state.files[file] {
                if entry.withdrawn {
                    return .refused(code: .withdrawn, message: "\(file) was withdrawn from the network; an admin must allow it again")
                }
                guard entry.size == size else {
                    return .refused(code: .invalidArguments, message: "\(file) is registered with size \(entry.size), not \(size)")
                }
            }
            try state.journal.append(["share \(file) \(size) \(address) \(identity.name) \(identity.fingerprint) \(name)"])
            var entry = state.files[file] ?? Entry(size: size, name: name, owner: identity.name)
            entry.holders[Self.key(address, identity.name)] = Holder(address: address, name: identity.name, fingerprint: identity.fingerprint, lastSeen: now)
            state.files[file] = entry
            return .done("shared \(file) from \(address)")
        }
    }

    /// The live holders of a file, or a refusal saying why there are none.
    public func holders(of file: FileID, now: Date = Date()) -> TrackerResponse {
        state.withLockedValue { state in
            guard let entry = state.files[file], !entry.withdrawn else {
                return .failure(code: .fileNotFound, message: "no peer shares \(file)")
            }
            let live = entry.holders.values
                .filter { now.timeIntervalSince($0.lastSeen) <= timeToLive }
                .sorted { $0.address < $1.address }
                .prefix(TrackerResponse.maximumHolders)
                .map { HolderRecord(address: $0.address, name: $0.name, fingerprint: $0.fingerprint) }
            guard !live.isEmpty else { return .failure(code: .noSeeders, message: "no peer holding \(file) is online") }
            return .holders(size: entry.size, name: entry.name, Array(live))
        }
    }

    /// Withdraws the caller's own entry, or — for the owner or an admin — the whole file.
    public func remove(file: FileID, address: String, identity: VerifiedIdentity, isAdmin: Bool) throws -> RegistryOutcome {
        try state.withLockedValue { state in
            guard var entry = state.files[file], !entry.withdrawn else {
                return .refused(code: .fileNotFound, message: "no peer shares \(file)")
            }
            if identity.name == entry.owner || isAdmin {
                try state.journal.append(["withdraw \(file)"])
                entry.withdrawn = true
                entry.holders = [:]
                state.files[file] = entry
                return .done("withdrew \(file) from the network")
            }
            let key = Self.key(address, identity.name)
            guard entry.holders[key] != nil else {
                return .refused(code: .accessDenied, message: "only the peer that first shared \(file) or an admin may withdraw it, and you hold no entry of it")
            }
            try state.journal.append(["remove \(file) \(address) \(identity.name)"])
            entry.holders[key] = nil
            state.files[file] = entry
            return .done("removed your entry for \(file)")
        }
    }

    /// Lets a withdrawn file be shared again (admins only; the caller checks).
    public func allow(file: FileID) throws -> RegistryOutcome {
        try state.withLockedValue { state in
            guard var entry = state.files[file], entry.withdrawn else {
                return .refused(code: .fileNotFound, message: "\(file) is not withdrawn")
            }
            try state.journal.append(["allow \(file)"])
            entry.withdrawn = false
            state.files[file] = entry
            return .done("\(file) may be shared again")
        }
    }

    /// Marks every entry of the caller at `address` as seen now.
    public func heartbeat(address: String, identity: VerifiedIdentity, now: Date = Date()) -> RegistryOutcome {
        state.withLockedValue { state in
            let key = Self.key(address, identity.name)
            var refreshed = 0
            for file in state.files.keys where state.files[file]!.holders[key] != nil {
                state.files[file]!.holders[key]!.lastSeen = now
                refreshed += 1
            }
            return .done("refreshed \(refreshed) entries")
        }
    }

    /// Drops every entry of the caller at `address` at once.
    public func leave(address: String, identity: VerifiedIdentity) throws -> RegistryOutcome {
        try state.withLockedValue { state in
            try state.journal.append(["leave \(address) \(identity.name)"])
            Self.dropHolder(Self.key(address, identity.name), from: &state.files)
            return .done("left")
        }
    }

    /// Drops holders silent for longer than the time to live; returns how many.
    @discardableResult
    public func expire(now: Date = Date()) throws -> Int {
        try state.withLockedValue { state in
            var lines: [String] = []
            for (file, entry) in state.files {
                for (key, holder) in entry.holders where now.timeIntervalSince(holder.lastSeen) > timeToLive {
                    lines.append("remove \(file) \(holder.address) \(holder.name)")
                    state.files[file]!.holders[key] = nil
                }
            }
            if !lines.isEmpty { try state.journal.append(lines) }
            return lines.count
        }
    }

    private static func key(_ address: String, _ name: String) -> String { "\(address) \(name)" }

    private static func dropHolder(_ key: String, from files: inout [FileID: Entry]) {
        for file in files.keys { files[file]!.holders[key] = nil }
    }

    private static func replay(_ line: Substring, into files: inout [FileID: Entry], now: Date) {
        let words = line.split(separator: " ", maxSplits: 6)
        switch (words.first, words.count) {
        case ("share"?, 7):
            guard let file = FileID(hex: words[1]), let size = UInt64(words[2]) else { return }
            var entry = files[file] ?? Entry(size: size, name: String(words[6]), owner: String(words[4]))
            let holder = Holder(address: String(words[3]), name: String(words[4]), fingerprint: String(words[5]), lastSeen: now)
            entry.holders[key(holder.address, holder.name)] = holder
            files[file] = entry
        case ("remove"?, 4):
            guard let file = FileID(hex: words[1]) else { return }
            files[file]?.holders[key(String(words[2]), String(words[3]))] = nil
        case ("withdraw"?, 2):
            guard let file = FileID(hex: words[1]) else { return }
            files[file]?.withdrawn = true
            files[file]?.holders = [:]
        case ("allow"?, 2):
            guard let file = FileID(hex: words[1]) else { return }
            files[file]?.withdrawn = false
        case ("leave"?, 3):
            dropHolder(key(String(words[1]), String(words[2])), from: &files)
        default:
            return
        }
    }

    /// The journal lines that rebuild `files`: for each file its owner's share first.
    private static func snapshot(_ files: [FileID: Entry]) -> [String] {
        var lines: [String] = []
        for (file, entry) in files.sorted(by: { $0.key.description < $1.key.description }) {
            let holders = entry.holders.values.sorted { ($0.name == entry.owner ? 0 : 1, $0.address) < ($1.name == entry.owner ? 0 : 1, $1.address) }
            if holders.first?.name != entry.owner {
                // Keep ownership even when the owner holds no entry: a share line, then its removal.
                lines.append("share \(file) \(entry.size) - \(entry.owner) - \(entry.name)")
                lines.append("remove \(file) - \(entry.owner)")
            }
            for holder in holders {
                lines.append("share \(file) \(entry.size) \(holder.address) \(holder.name) \(holder.fingerprint) \(entry.name)")
            }
            if entry.withdrawn { lines.append("withdraw \(file)") }
        }
        return lines
    }
}
