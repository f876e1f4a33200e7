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
/// A file is known by its root hash. Every verified share carries a signer: the peer whose
/// certificate signed the `.mtorrent` header it proved. Each signer's claim on a root (size and
/// name, as signed) stands on its own, so a peer that signs a header for someone else's root —
/// with a wrong size, or to withdraw it — touches only its own claim and the holders that announced
/// under it. A signer withdraws its claim; an admin withdraws the root for everyone.
///
/// `seeders.txt` is a journal: every change is one appended line, fsynced before the request is
/// answered, so an answered share survives `kill -9`. On start the journal is replayed (a torn
/// last line, from a crash in mid-append, was never answered and is ignored) and rewritten
/// compactly through a temporary file, fsync and rename. Lines:
///
///     claim <root> <size> <signer> <signer fingerprint> <file name>
///     hold <root> <signer> <host:port> <peer> <fingerprint>
///     remove <root> <host:port> <peer>
///     withdraw <root> <signer>
///     withdraw <root>
///     allow <root>
///     leave <host:port> <peer>
///
/// Journals written before shares carried proof hold `share <root> <size> <host:port> <peer>
/// <fingerprint> <file name>` lines; they are still read: the first share of a root is a claim by
/// its sharer, later ones hold under that claim.
public final class Registry: Sendable {
    struct Holder: Sendable {
        let address: String
        let name: String
        let fingerprint: String
        /// The signer whose header this holder announced.
        let signer: String
        var lastSeen: Date
    }

    /// What one signer vouches for under a root.
    struct Claim: Sendable, Equatable {
        let size: UInt64
        let name: String
        let signerFingerprint: String
        var withdrawn = false
    }

    struct Entry: Sendable {
        /// By signer name.
        var claims: [String: Claim] = [:]
        var holders: [String: Holder] = [:]
        /// Withdrawn by an admin: nobody may share the root until an admin allows it again.
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

    /// Records `identity` at `address` as a holder of `file` under the claim of `signer`, whose
    /// verified header gave `size` and `name`.
    public func share(
        file: FileID, size: UInt64, name: String, signer: VerifiedIdentity, address: String, identity: VerifiedIdentity, now: Date = Date()
    ) throws -> RegistryOutcome {
        try state.withLockedValue { state in
            var entry = state.files[file] ?? Entry()
            if entry.withdrawn {
                return .refused(code: .withdrawn, message: "\(file) was withdrawn from the network; an admin must allow it again")
            }
            if entry.claims[signer.name]?.withdrawn == true {
                return .refused(code: .withdrawn, message: "\(file) as signed by '\(signer.name)' was withdrawn; its signer shares it again with a new .mtorrent only after an admin allows it")
            }
            let claim = Claim(size: size, name: name, signerFingerprint: signer.fingerprint)
            var lines: [String] = []
            if entry.claims[signer.name] != claim { lines.append("claim \(file) \(size) \(signer.name) \(signer.fingerprint) \(name)") }
            lines.append("hold \(file) \(signer.name) \(address) \(identity.name) \(identity.fingerprint)")
            try state.journal.append(lines)
            entry.claims[signer.name] = claim
            entry.holders[Self.key(address, identity.name)] = Holder(
                address: address, name: identity.name, fingerprint: identity.fingerprint, signer: signer.name, lastSeen: now
            )
            state.files[file] = entry
            return .done("shared \(file) from \(address)")
        }
    }

    /// The live holders of a file, or a refusal saying why there are none. The size and name are
    /// those of the claim most live holders announced.
    public func holders(of file: FileID, now: Date = Date()) -> TrackerResponse {
        state.withLockedValue { state in
            guard let entry = state.files[file], !entry.withdrawn, entry.claims.values.contains(where: { !$0.withdrawn }) else {
                return .failure(code: .fileNotFound, message: "no peer shares \(file)")
            }
            let live = entry.holders.values
                .filter { now.timeIntervalSince($0.lastSeen) <= timeToLive }
                .sorted { $0.address < $1.address }
                .prefix(TrackerResponse.maximumHolders)
            guard !live.isEmpty else { return .failure(code: .noSeeders, message: "no peer holding \(file) is online") }
            let counts = Dictionary(live.map { ($0.signer, 1) }, uniquingKeysWith: +)
            let signer = counts.keys.min { (-counts[$0]!, $0) < (-counts[$1]!, $1) }!
            let claim = entry.claims[signer]!
            let records = live.map { HolderRecord(address: $0.address, name: $0.name, fingerprint: $0.fingerprint) }
            return .holders(size: claim.size, name: claim.name, Array(records))
        }
    }

    /// Withdraws a file: an admin for the whole network, a signer its own claim (with the holders
    /// that announced it); anyone else withdraws only its own holder entry.
    public func remove(file: FileID, address: String, identity: VerifiedIdentity, isAdmin: Bool) throws -> RegistryOutcome {
        try state.withLockedValue { state in
            guard var entry = state.files[file], !entry.withdrawn else {
                return .refused(code: .fileNotFound, message: "no peer shares \(file)")
            }
            if isAdmin {
                try state.journal.append(["withdraw \(file)"])
                entry.withdrawn = true
                entry.holders = [:]
                state.files[file] = entry
                return .done("withdrew \(file) from the network")
            }
            if entry.claims[identity.name]?.withdrawn == false {
                try state.journal.append(["withdraw \(file) \(identity.name)"])
                Self.withdraw(identity.name, from: &entry)
                state.files[file] = entry
                return .done("withdrew \(file) from the network")
            }
            let key = Self.key(address, identity.name)
            guard entry.holders[key] != nil else {
                return .refused(code: .accessDenied, message: "only the signer of \(file) or an admin may withdraw it, and you hold no entry of it")
            }
            try state.journal.append(["remove \(file) \(address) \(identity.name)"])
            entry.holders[key] = nil
            state.files[file] = entry
            return .done("removed your entry for \(file)")
        }
    }

    /// Lets a withdrawn file — by an admin or by any signer — be shared again (admins only; the caller checks).
    public func allow(file: FileID) throws -> RegistryOutcome {
        try state.withLockedValue { state in
            guard var entry = state.files[file], entry.withdrawn || entry.claims.values.contains(where: \.withdrawn) else {
                return .refused(code: .fileNotFound, message: "\(file) is not withdrawn")
            }
            try state.journal.append(["allow \(file)"])
            Self.allow(&entry)
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

    private static func withdraw(_ signer: String, from entry: inout Entry) {
        entry.claims[signer]?.withdrawn = true
        entry.holders = entry.holders.filter { $0.value.signer != signer }
    }

    private static func allow(_ entry: inout Entry) {
        entry.withdrawn = false
        for signer in entry.claims.keys { entry.claims[signer]!.withdrawn = false }
    }

    private static func replay(_ line: Substring, into files: inout [FileID: Entry], now: Date) {
        let verb = line.prefix { $0 != " " }
        // The file name, last on claim and share lines, may contain spaces.
        let words = line.split(separator: " ", maxSplits: verb == "claim" ? 5 : 6)
        if verb == "leave", words.count == 3 { return dropHolder(key(String(words[1]), String(words[2])), from: &files) }
        guard words.count >= 2, let file = FileID(hex: words[1]) else { return }
        switch (verb, words.count) {
        case ("claim", 6):
            guard let size = UInt64(words[2]) else { return }
            files[file, default: Entry()].claims[String(words[3])] = Claim(size: size, name: String(words[5]), signerFingerprint: String(words[4]))
        case ("hold", 6):
            guard files[file]?.claims[String(words[2])] != nil else { return }
            let holder = Holder(address: String(words[3]), name: String(words[4]), fingerprint: String(words[5]), signer: String(words[2]), lastSeen: now)
            files[file]!.holders[key(holder.address, holder.name)] = holder
        case ("share", 7):
            // A journal from before shares carried proof: the first sharer of a root holds the claim.
            guard let size = UInt64(words[2]) else { return }
            var entry = files[file] ?? Entry()
            let signer = entry.claims.keys.min() ?? String(words[4])
            if entry.claims.isEmpty { entry.claims[signer] = Claim(size: size, name: String(words[6]), signerFingerprint: String(words[5])) }
            let holder = Holder(address: String(words[3]), name: String(words[4]), fingerprint: String(words[5]), signer: signer, lastSeen: now)
            entry.holders[key(holder.address, holder.name)] = holder
            files[file] = entry
        case ("remove", 4):
            files[file]?.holders[key(String(words[2]), String(words[3]))] = nil
        case ("withdraw", 2):
            files[file]?.withdrawn = true
            files[file]?.holders = [:]
        case ("withdraw", 3):
            if files[file] != nil { withdraw(String(words[2]), from: &files[file]!) }
        case ("allow", 2):
            if files[file] != nil { allow(&files[file]!) }
        default:
            return
        }
    }

    /// The journal lines that rebuild `files`: for each file its claims, their holders, then withdrawals.
    private static func snapshot(_ files: [FileID: Entry]) -> [String] {
        var lines: [String] = []
        for (file, entry) in files.sorted(by: { $0.key.description < $1.key.description }) {
            let claims = entry.claims.sorted { $0.key < $1.key }
            for (signer, claim) in claims {
                lines.append("claim \(file) \(claim.size) \(signer) \(claim.signerFingerprint) \(claim.name)")
            }
            for holder in entry.holders.values.sorted(by: { ($0.address, $0.name) < ($1.address, $1.name) }) {
                lines.append("hold \(file) \(holder.signer) \(holder.address) \(holder.name) \(holder.fingerprint)")
            }
            for (signer, claim) in claims where claim.withdrawn { lines.append("withdraw \(file) \(signer)") }
            if entry.withdrawn { lines.append("withdraw \(file)") }
        }
        return lines
    }
}
