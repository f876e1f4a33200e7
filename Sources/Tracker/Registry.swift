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
/// A certificate is a holder of a file at most once, keyed by its fingerprint, at the address its
/// connection came from with the port it announced, under the signer it last announced; a new
/// share from it moves it. One certificate holds at most ``maximumFilesPerPeer`` files, and a file
/// nobody holds is forgotten after the time to live (a withdrawal stays), so one party cannot fill
/// the registry or the journal.
///
/// `seeders.txt` is a journal: every change is one appended line (``JournalLine``), fsynced before
/// the request is answered, so an answered share survives `kill -9`; an append that fails is cut
/// back. On start the journal is replayed line by line (a torn last line, from a crash in
/// mid-append, was never answered and is ignored; a damaged line before it stops the start with
/// its number) and rewritten compactly through a temporary file, fsync and rename.
public final class Registry: Sendable {
    struct Holder: Sendable {
        var address: String
        let name: String
        let fingerprint: String
        /// The signer whose header this holder announced.
        var signer: String
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
        /// By certificate fingerprint.
        var holders: [String: Holder] = [:]
        /// Withdrawn by an admin: nobody may share the root until an admin allows it again.
        var withdrawn = false
        /// When the last holder went; a file nobody holds for the time to live is forgotten.
        var vacantSince: Date?

        /// Whether forgetting the file would lose a withdrawal.
        var hasWithdrawal: Bool { withdrawn || claims.values.contains(where: \.withdrawn) }
    }

    private struct State: Sendable {
        var files: [FileID: Entry] = [:]
        /// The files each certificate (by fingerprint) holds.
        var holdings: [String: Set<FileID>] = [:]
        var holderCount = 0

        mutating func add(_ holder: Holder, to file: FileID) {
            files[file]!.vacantSince = nil
            if files[file]!.holders.updateValue(holder, forKey: holder.fingerprint) == nil {
                holdings[holder.fingerprint, default: []].insert(file)
                holderCount += 1
            }
        }

        mutating func dropHolder(_ fingerprint: String, of file: FileID, now: Date) {
            guard files[file]?.holders.removeValue(forKey: fingerprint) != nil else { return }
            if files[file]!.holders.isEmpty { files[file]!.vacantSince = now }
            holdings[fingerprint]?.remove(file)
            if holdings[fingerprint]?.isEmpty == true { holdings[fingerprint] = nil }
            holderCount -= 1
        }

        mutating func dropHolders(of file: FileID, now: Date, where condition: (Holder) -> Bool) {
            for holder in files[file].map({ Array($0.holders.values) }) ?? [] where condition(holder) {
                dropHolder(holder.fingerprint, of: file, now: now)
            }
        }

        /// The files `fingerprint` holds at `address`.
        func files(of fingerprint: String, at address: String) -> [FileID] {
            (holdings[fingerprint] ?? []).filter { files[$0]?.holders[fingerprint]?.address == address }
        }

        mutating func apply(_ line: JournalLine, now: Date) {
            switch line {
            case .claim(let file, let size, let signer, let signerFingerprint, let fileName):
                if files[file] == nil { files[file] = Entry(vacantSince: now) }
                files[file]!.claims[signer] = Claim(size: size, name: fileName, signerFingerprint: signerFingerprint)
            case .hold(let file, let signer, let address, let name, let fingerprint):
                guard files[file]?.claims[signer] != nil else { return }
                add(Holder(address: address, name: name, fingerprint: fingerprint, signer: signer, lastSeen: now), to: file)
            case .share(let file, let size, let address, let name, let fingerprint, let fileName):
                // A journal from before shares carried proof: the first sharer of a root holds the
                // claim, later ones hold under it; fingerprint `-` only kept the claim.
                if files[file] == nil { files[file] = Entry(vacantSince: now) }
                let signer = files[file]!.claims.keys.min() ?? name
                if files[file]!.claims.isEmpty {
                    files[file]!.claims[signer] = Claim(size: size, name: fileName, signerFingerprint: fingerprint)
                }
                guard fingerprint != "-" else { return }
                add(Holder(address: address, name: name, fingerprint: fingerprint, signer: signer, lastSeen: now), to: file)
            case .remove(let file, _, _, let fingerprint):
                dropHolder(fingerprint, of: file, now: now)
            case .legacyRemove(let file, let address, let name):
                dropHolders(of: file, now: now) { $0.address == address && $0.name == name }
            case .withdraw(let file, nil):
                dropHolders(of: file, now: now) { _ in true }
                files[file, default: Entry()].withdrawn = true
            case .withdraw(let file, let signer?):
                guard files[file]?.claims[signer] != nil else { return }
                files[file]!.claims[signer]!.withdrawn = true
                dropHolders(of: file, now: now) { $0.signer == signer }
            case .allow(let file):
                guard var entry = files[file] else { return }
                entry.withdrawn = false
                for signer in entry.claims.keys { entry.claims[signer]!.withdrawn = false }
                if entry.holders.isEmpty { entry.vacantSince = now }
                files[file] = entry
            case .leave(let address, _, let fingerprint):
                for file in self.files(of: fingerprint, at: address) { dropHolder(fingerprint, of: file, now: now) }
            case .legacyLeave(let address, let name):
                for file in Array(files.keys) { dropHolders(of: file, now: now) { $0.address == address && $0.name == name } }
            }
        }
    }

    private let state: NIOLockedValueBox<State>
    private let journal: AppendLog
    /// Holders silent for longer than this are dropped, and files nobody holds for as long are forgotten.
    public let timeToLive: TimeInterval
    /// Most files one certificate may hold.
    public let maximumFilesPerPeer: Int
    public let path: String

    /// Opens (creating if needed) the registry kept in `folder/seeders.txt`; `journalWrite` replaces
    /// the system's `write(2)` for the journal when a test injects failures.
    public init(
        folder: String, timeToLive: TimeInterval, maximumFilesPerPeer: Int = 10_000, now: Date = Date(), journalWrite: AppendLog.Write? = nil
    ) throws {
        try FileIO.makeFolder(folder, mode: 0o755)
        path = "\(folder)/seeders.txt"
        self.timeToLive = timeToLive
        self.maximumFilesPerPeer = maximumFilesPerPeer
        var replayed = State()
        if FileIO.exists(path) {
            // A torn last line, after the last line feed, was never answered: it is not replayed.
            _ = try FileIO.forEachLine(path, maximumLineLength: JournalLine.maximumLength) { [path] line, number in
                guard let parsed = JournalLine(line) else { throw JournalError(path: path, line: number, text: String(line)) }
                replayed.apply(parsed, now: now)
            }
        }
        try FileIO.replaceAtomically(path, bytes: Array(Self.snapshot(replayed.files).map { $0.text + "\n" }.joined().utf8), mode: 0o644)
        state = NIOLockedValueBox(replayed)
        journal = try AppendLog(path: path, write: journalWrite)
    }

    /// Number of files and of holder entries, for the start-up log line.
    public var counts: (files: Int, holders: Int) {
        state.withLockedValue { state in (state.files.count, state.holderCount) }
    }

    /// Records `identity` at `address` as the holder of `file` under the claim of `signer`, whose
    /// verified header gave `size` and `name`; an earlier entry of the same certificate moves.
    public func share(
        file: FileID, size: UInt64, name: String, signer: VerifiedIdentity, address: String, identity: VerifiedIdentity, now: Date = Date()
    ) throws -> RegistryOutcome {
        try state.withLockedValue { state in
            let entry = state.files[file]
            if entry?.withdrawn == true {
                return .refused(code: .withdrawn, message: "\(file) was withdrawn from the network; an admin must allow it again")
            }
            if entry?.claims[signer.name]?.withdrawn == true {
                return .refused(code: .withdrawn, message: "\(file) as signed by '\(signer.name)' was withdrawn; its signer shares it again with a new .mtorrent only after an admin allows it")
            }
            if entry?.holders[identity.fingerprint] == nil, state.holdings[identity.fingerprint]?.count ?? 0 >= maximumFilesPerPeer {
                return .refused(code: .quota, message: "this certificate holds \(maximumFilesPerPeer) files already, the most this tracker allows; remove some first")
            }
            var lines: [JournalLine] = []
            if entry?.claims[signer.name] != Claim(size: size, name: name, signerFingerprint: signer.fingerprint) {
                lines.append(.claim(file: file, size: size, signer: signer.name, signerFingerprint: signer.fingerprint, fileName: name))
            }
            lines.append(.hold(file: file, signer: signer.name, address: address, name: identity.name, fingerprint: identity.fingerprint))
            try journal.append(lines.map(\.text))
            for line in lines { state.apply(line, now: now) }
            return .done("shared \(file) from \(address)")
        }
    }

    /// The live holders of a file, or a refusal saying why there are none: a random sample of at
    /// most ``TrackerResponse/maximumHolders``, so that no holder can push the others out. The
    /// size and name are those of the claim most live holders announced.
    public func holders(of file: FileID, now: Date = Date()) -> TrackerResponse {
        state.withLockedValue { state in
            guard let entry = state.files[file], !entry.withdrawn, entry.claims.values.contains(where: { !$0.withdrawn }) else {
                return .failure(code: .fileNotFound, message: "no peer shares \(file)")
            }
            let live = entry.holders.values.filter { now.timeIntervalSince($0.lastSeen) <= timeToLive }
            guard !live.isEmpty else { return .failure(code: .noSeeders, message: "no peer holding \(file) is online") }
            let counts = Dictionary(live.map { ($0.signer, 1) }, uniquingKeysWith: +)
            let signer = counts.keys.min { (-counts[$0]!, $0) < (-counts[$1]!, $1) }!
            let claim = entry.claims[signer]!
            let records = live.shuffled()
                .prefix(TrackerResponse.maximumHolders)
                .map { HolderRecord(address: $0.address, name: $0.name, fingerprint: $0.fingerprint) }
            return .holders(size: claim.size, name: claim.name, Array(records))
        }
    }

    /// Withdraws a file: an admin for the whole network, a signer its own claim (with the holders
    /// that announced it); anyone else withdraws only its own holder entry.
    public func remove(file: FileID, address: String, identity: VerifiedIdentity, isAdmin: Bool, now: Date = Date()) throws -> RegistryOutcome {
        try state.withLockedValue { state in
            guard let entry = state.files[file], !entry.withdrawn else {
                return .refused(code: .fileNotFound, message: "no peer shares \(file)")
            }
            if isAdmin || entry.claims[identity.name]?.withdrawn == false {
                let line = JournalLine.withdraw(file: file, signer: isAdmin ? nil : identity.name)
                try journal.append([line.text])
                state.apply(line, now: now)
                return .done("withdrew \(file) from the network")
            }
            guard let holder = entry.holders[identity.fingerprint] else {
                return .refused(code: .accessDenied, message: "only the signer of \(file) or an admin may withdraw it, and you hold no entry of it")
            }
            let line = JournalLine.remove(file: file, address: holder.address, name: holder.name, fingerprint: holder.fingerprint)
            try journal.append([line.text])
            state.apply(line, now: now)
            return .done("removed your entry for \(file)")
        }
    }

    /// Lets a withdrawn file — by an admin or by any signer — be shared again (admins only; the caller checks).
    public func allow(file: FileID, now: Date = Date()) throws -> RegistryOutcome {
        try state.withLockedValue { state in
            guard let entry = state.files[file], entry.hasWithdrawal else {
                return .refused(code: .fileNotFound, message: "\(file) is not withdrawn")
            }
            let line = JournalLine.allow(file: file)
            try journal.append([line.text])
            state.apply(line, now: now)
            return .done("\(file) may be shared again")
        }
    }

    /// Marks every entry of the caller at `address` as seen now.
    public func heartbeat(address: String, identity: VerifiedIdentity, now: Date = Date()) -> RegistryOutcome {
        state.withLockedValue { state in
            let held = state.files(of: identity.fingerprint, at: address)
            for file in held { state.files[file]!.holders[identity.fingerprint]!.lastSeen = now }
            return .done("refreshed \(held.count) entries")
        }
    }

    /// Drops every entry of the caller at `address` at once.
    public func leave(address: String, identity: VerifiedIdentity, now: Date = Date()) throws -> RegistryOutcome {
        try state.withLockedValue { state in
            let line = JournalLine.leave(address: address, name: identity.name, fingerprint: identity.fingerprint)
            try journal.append([line.text])
            state.apply(line, now: now)
            return .done("left")
        }
    }

    /// Drops holders silent for longer than the time to live and forgets files nobody held for as
    /// long, keeping their withdrawals (no journal line: a replay brings such a file back without
    /// holders, to be forgotten again); returns how many holders were dropped.
    @discardableResult
    public func expire(now: Date = Date()) throws -> Int {
        try state.withLockedValue { state in
            var lines: [JournalLine] = []
            for (file, entry) in state.files {
                for holder in entry.holders.values where now.timeIntervalSince(holder.lastSeen) > timeToLive {
                    lines.append(.remove(file: file, address: holder.address, name: holder.name, fingerprint: holder.fingerprint))
                }
            }
            if !lines.isEmpty { try journal.append(lines.map(\.text)) }
            for line in lines { state.apply(line, now: now) }
            for (file, entry) in state.files where entry.holders.isEmpty {
                guard let vacantSince = entry.vacantSince, now.timeIntervalSince(vacantSince) > timeToLive else { continue }
                if entry.hasWithdrawal {
                    state.files[file]!.claims = entry.claims.filter(\.value.withdrawn)
                } else {
                    state.files[file] = nil
                }
            }
            return lines.count
        }
    }

    /// The journal lines that rebuild `files`: for each file its claims, their holders, then withdrawals.
    private static func snapshot(_ files: [FileID: Entry]) -> [JournalLine] {
        var lines: [JournalLine] = []
        for (file, entry) in files.sorted(by: { $0.key.description < $1.key.description }) {
            let claims = entry.claims.sorted { $0.key < $1.key }
            for (signer, claim) in claims {
                lines.append(.claim(file: file, size: claim.size, signer: signer, signerFingerprint: claim.signerFingerprint, fileName: claim.name))
            }
            for holder in entry.holders.values.sorted(by: { ($0.address, $0.name) < ($1.address, $1.name) }) {
                lines.append(.hold(file: file, signer: holder.signer, address: holder.address, name: holder.name, fingerprint: holder.fingerprint))
            }
            for (signer, claim) in claims where claim.withdrawn { lines.append(.withdraw(file: file, signer: signer)) }
            if entry.withdrawn { lines.append(.withdraw(file: file, signer: nil)) }
        }
        return lines
    }
}

/// A `seeders.txt` the tracker refuses to start from: a damaged line before the end, which a crash
/// alone cannot leave there.
public struct JournalError: Error, CustomStringConvertible {
    public let path: String
    /// The number of the damaged line, from 1.
    public let line: Int
    public let text: String

    public var description: String {
        "\(path) line \(line) is not a journal line (torn or altered): '\(text.prefix(80))'; repair or remove that line, or restore the file from a backup"
    }
}
