import FileIO
import Foundation
import Logging
import PKI
import NIOConcurrencyHelpers
import Telemetry
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
/// `seeders.txt` is a journal: every change is applied in memory at once and appended as a line
/// (``JournalLine``) by a writer thread that syncs many changes together (``GroupCommitLog``); a
/// change is answered only once its line is durable, so an answered share survives `kill -9`, and
/// one that cannot be written is undone. On start the journal is replayed (a torn last line, from
/// a crash in mid-append, was never answered and is cut off). Whenever it outgrows the state, at
/// start or while running, it is rewritten compactly through a temporary file, fsync and rename.
public final class Registry: Sendable {
    private let state: NIOLockedValueBox<RegistryState>
    private let journal: GroupCommitLog
    private let logger: Logger
    /// Holders silent for longer than this are dropped, and files nobody holds for as long are forgotten.
    public let timeToLive: TimeInterval
    /// Most files one certificate may hold.
    public let maximumFilesPerPeer: Int
    /// The journal is compacted while running once it is larger than this and than twice the state.
    public let compactionThreshold: Int
    public let path: String
    /// Average bytes of a journal line in the last compaction, to estimate the state's size.
    private let bytesPerLine: NIOLockedValueBox<Int>
    /// Signalled once the writer thread has ended: every change queued before has been written.
    private let writerEnded = DispatchSemaphore(value: 0)
    /// Lines replayed before the registry makes room for the files the whole journal holds.
    private static let linesBeforeSizing = 65_536

    /// Opens (creating if needed) the registry kept in `folder/seeders.txt`; `journalWrite` replaces
    /// the system's `write(2)` for the journal when a test injects failures.
    public init(
        folder: String, timeToLive: TimeInterval, maximumFilesPerPeer: Int = 10_000, compactionThreshold: Int = 64 << 20,
        logger: Logger = Logger(label: "registry"), now: Date = Date(), journalWrite: AppendLog.Write? = nil
    ) throws {
        try FileIO.makeFolder(folder, mode: 0o755)
        path = "\(folder)/seeders.txt"
        self.timeToLive = timeToLive
        self.maximumFilesPerPeer = maximumFilesPerPeer
        self.compactionThreshold = compactionThreshold
        self.logger = logger
        var replayed = RegistryState()
        var read = (lines: 0, bytes: 0)
        var earlierFormat = false
        let existed = FileIO.exists(path)
        if existed {
            let journalBytes = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? nil
            var sized = false
            read.bytes = try JournalReader.read(path) { batch in
                for line in batch.lines {
                    replayed.apply(line, now: now)
                    earlierFormat = earlierFormat || line.isEarlierFormat
                }
                read.lines = batch.lastLineNumber
                if !sized, batch.lastLineNumber >= Self.linesBeforeSizing, let journalBytes {
                    // The files seen so far, scaled to the whole journal, with a little room.
                    replayed.reserveCapacity(files: Int(Double(replayed.fileCount) * Double(journalBytes) / Double(batch.bytesThrough) * 1.05))
                    sized = true
                }
            }
        }
        state = NIOLockedValueBox(replayed)
        let averageLine = read.lines == 0 ? 200 : read.bytes / read.lines
        // Lines of an earlier format are rewritten in the current one at once.
        let compacting = !existed || earlierFormat || read.bytes > max(compactionThreshold, 2 * (replayed.fileCount + replayed.holderCount) * averageLine)
        bytesPerLine = NIOLockedValueBox(compacting ? try Self.compact(replayed, into: path) : averageLine)
        let file = try AppendLog(path: path, write: journalWrite)
        // A torn last line, after the last line feed, was never answered: it is not replayed, and cut off.
        if !compacting, file.length > read.bytes { try file.truncate(to: read.bytes) }
        journal = GroupCommitLog(file: file)
        let thread = Thread { [weak self, journal, writerEnded] in
            defer { writerEnded.signal() }
            while journal.waitForWork() {
                guard let self else { return }
                self.commitQueued()
            }
        }
        thread.name = "seeders.txt"
        thread.start()
    }

    deinit {
        journal.stop()
    }

    /// Writes what is queued and stops the writer: for a tracker that is stopping, once the
    /// changes it answered are in. False if the writer did not end within `seconds` (a disk that
    /// does not answer); changes then left unwritten were never answered.
    public func close(within seconds: Double) -> Bool {
        journal.stop()
        return writerEnded.wait(timeout: .now() + seconds) == .success
    }

    /// Number of files and of holder entries, for the start-up log line.
    public var counts: (files: Int, holders: Int) {
        state.withLockedValue { state in (state.fileCount, state.holderCount) }
    }

    /// Records `identity` at `address` as the holder of `file` under the claim of `signer`, whose
    /// verified header gave `size` and `name`; an earlier entry of the same certificate moves.
    public func share(
        file: FileID, size: UInt64, name: String, signer: VerifiedIdentity, address: String, identity: VerifiedIdentity, now: Date = Date()
    ) async throws -> RegistryOutcome {
        try await change(now: now) { state in
            let claim = state.claim(on: file, by: signer.name)
            if state.stored(file)?.withdrawn == true {
                return .refuse(code: .withdrawn, message: "\(file) was withdrawn from the network; an admin must allow it again")
            }
            if claim?.withdrawn == true {
                return .refuse(code: .withdrawn, message: "\(file) as signed by '\(signer.name)' was withdrawn; its signer shares it again with a new .mtorrent only after an admin allows it")
            }
            if state.holder(of: file, fingerprint: identity.fingerprint) == nil, state.heldCount(identity.fingerprint) >= maximumFilesPerPeer {
                return .refuse(code: .quota, message: "this certificate holds \(maximumFilesPerPeer) files already, the most this tracker allows; remove some first")
            }
            let root = RootKey(file)
            var lines: [JournalLine] = []
            if claim.map({ $0.size == size && $0.name == name && $0.signerFingerprint == signer.fingerprint }) != true {
                lines.append(.claim(file: root, size: size, signer: signer.name, signerFingerprint: Fingerprint(verified: signer.fingerprint), fileName: name))
            }
            lines.append(.hold(file: root, signer: signer.name, address: address, name: identity.name, fingerprint: Fingerprint(verified: identity.fingerprint)))
            return .record(lines, touching: [file], answer: "shared \(file) from \(address)")
        }
    }

    /// The live holders of a file, or a refusal saying why there are none: a random sample of at
    /// most ``TrackerResponse/maximumHolders``, so that no holder can push the others out. The
    /// size and name are those of the claim most live holders announced. Holders whose
    /// certificate fingerprint is in `excluded` (revoked ones) are left out.
    public func holders(of file: FileID, excluding excluded: Set<String> = [], now: Date = Date()) -> TrackerResponse {
        state.withLockedValue { state in
            guard let entry = state.stored(file), !entry.withdrawn, entry.claims.contains(where: { !$0.withdrawn }) else {
                return .failure(code: .fileNotFound, message: "no peer shares \(file)")
            }
            guard let (claim, live) = state.liveHolders(of: file, since: now - timeToLive),
                  case let listed = excluded.isEmpty ? live : live.filter({ !excluded.contains($0.fingerprint) }), !listed.isEmpty
            else {
                return .failure(code: .noSeeders, message: "no peer holding \(file) is online")
            }
            return .holders(size: claim.size, name: claim.name, Array(listed.shuffled().prefix(TrackerResponse.maximumHolders)))
        }
    }

    /// Withdraws a file: an admin for the whole network, a signer its own claim (with the holders
    /// that announced it); anyone else withdraws only its own holder entry.
    public func remove(file: FileID, address: String, identity: VerifiedIdentity, isAdmin: Bool, now: Date = Date()) async throws -> RegistryOutcome {
        try await change(now: now) { state in
            guard let entry = state.stored(file), !entry.withdrawn else {
                return .refuse(code: .fileNotFound, message: "no peer shares \(file)")
            }
            if isAdmin || state.claim(on: file, by: identity.name)?.withdrawn == false {
                let line = JournalLine.withdraw(file: RootKey(file), signer: isAdmin ? nil : identity.name)
                return .record([line], touching: [file], answer: "withdrew \(file) from the network")
            }
            guard let holder = state.holder(of: file, fingerprint: identity.fingerprint) else {
                return .refuse(code: .accessDenied, message: "only the signer of \(file) or an admin may withdraw it, and you hold no entry of it")
            }
            let line = JournalLine.remove(file: RootKey(file), address: holder.address, name: holder.name, fingerprint: Fingerprint(verified: holder.fingerprint))
            return .record([line], touching: [file], answer: "removed your entry for \(file)")
        }
    }

    /// Lets a withdrawn file — by an admin or by any signer — be shared again (admins only; the caller checks).
    public func allow(file: FileID, now: Date = Date()) async throws -> RegistryOutcome {
        try await change(now: now) { state in
            guard let entry = state.stored(file), entry.hasWithdrawal else {
                return .refuse(code: .fileNotFound, message: "\(file) is not withdrawn")
            }
            return .record([.allow(file: RootKey(file))], touching: [file], answer: "\(file) may be shared again")
        }
    }

    /// Marks every entry of the caller at `address` as seen now.
    public func heartbeat(address: String, identity: VerifiedIdentity, now: Date = Date()) -> RegistryOutcome {
        state.withLockedValue { state in
            let held = state.files(of: identity.fingerprint, at: address)
            for file in held { state.touch(file, fingerprint: identity.fingerprint, now: now) }
            return .done("refreshed \(held.count) entries")
        }
    }

    /// Drops every entry of the caller at `address` at once.
    public func leave(address: String, identity: VerifiedIdentity, now: Date = Date()) async throws -> RegistryOutcome {
        try await change(now: now) { state in
            let line = JournalLine.leave(address: address, name: identity.name, fingerprint: Fingerprint(verified: identity.fingerprint))
            return .record([line], touching: state.files(of: identity.fingerprint, at: address), answer: "left")
        }
    }

    /// Drops holders silent for longer than the time to live and forgets files nobody held for as
    /// long, keeping their withdrawals (no journal line: a replay brings such a file back without
    /// holders, to be forgotten again); returns how many holders were dropped. Their journal lines are written in the
    /// background; if that fails the holders come back, to be dropped at the next sweep.
    @discardableResult
    public func expire(now: Date = Date()) -> Int {
        state.withLockedValue { state in
            let cutoff = now - timeToLive
            let silent = state.silentHolders(before: cutoff)
            let lines = silent.flatMap { file, holders in
                holders.map { JournalLine.remove(file: RootKey(file), address: $0.address, name: $0.name, fingerprint: Fingerprint(verified: $0.fingerprint)) }
            }
            if !lines.isEmpty {
                record(lines, touching: silent.map(\.0), in: &state, now: now) { [logger] error in
                    if let error { logger.error("cannot record expired holders", metadata: ["error": "\(error)"]) }
                }
            }
            state.forgetVacant(before: cutoff)
            return lines.count
        }
    }

    /// What a change decides under the lock: a refusal, or journal lines that change the files touched.
    private enum Decision {
        case refuse(code: FailureCode, message: String)
        case record([JournalLine], touching: [FileID], answer: String)
    }

    /// Decides a change under the lock and applies it at once (a GET sees it), then answers once
    /// its lines are durable; if they cannot be written it is undone and the error thrown.
    private func change(now: Date, _ decide: (RegistryState) -> Decision) async throws -> RegistryOutcome {
        try await withCheckedThrowingContinuation { continuation in
            state.withLockedValue { state in
                switch decide(state) {
                case .refuse(let code, let message):
                    continuation.resume(returning: .refused(code: code, message: message))
                case .record(let lines, let touched, let answer):
                    record(lines, touching: touched, in: &state, now: now) { error in
                        if let error { continuation.resume(throwing: error) } else { continuation.resume(returning: .done(answer)) }
                    }
                }
            }
        }
    }

    /// Applies `lines` and queues them for the writer thread (the caller holds the lock).
    private func record(_ lines: [JournalLine], touching files: [FileID], in state: inout RegistryState, now: Date, done: @escaping @Sendable ((any Error)?) -> Void) {
        let replaced = files.map { ($0, state.stored($0)) }
        for line in lines { state.apply(line, now: now) }
        guard journal.enqueue(GroupCommitLog.Change(lines: lines.map(\.text), replaced: replaced, done: done)) else {
            for (file, entry) in replaced.reversed() { state.restore(file, to: entry) }
            done(RegistryClosed(path: path))
            return
        }
    }

    /// Writes every queued change in one append and sync, then answers them (writer thread).
    private func commitQueued() {
        let (changes, compaction) = state.withLockedValue { state in
            (journal.take(), compactionDue(state) ? state : nil)
        }
        do {
            try journal.write(changes)
        } catch {
            logger.error("cannot write to the journal; the changes are refused", metadata: ["path": "\(path)", "error": "\(error)"])
            // Changes queued meanwhile were applied on top of these: undo them all, newest first.
            let failed = state.withLockedValue { state in
                let failed = changes + journal.take()
                for change in failed.reversed() {
                    for (file, entry) in change.replaced.reversed() { state.restore(file, to: entry) }
                }
                return failed
            }
            for change in failed { change.done(error) }
            return
        }
        if let compaction {
            do {
                let average = try Self.compact(compaction, into: path)
                bytesPerLine.withLockedValue { $0 = average }
                try journal.reopen()
                CounterMetric.trackerJournalCompactions.increment()
                logger.info("compacted the journal", metadata: ["path": "\(path)", "files": "\(compaction.fileCount)"])
            } catch {
                logger.error("cannot compact the journal; appending to it as before", metadata: ["path": "\(path)", "error": "\(error)"])
            }
        }
        for change in changes { change.done(nil) }
    }

    /// Whether the journal has outgrown the state enough to be rewritten (writer thread, under the lock).
    private func compactionDue(_ state: RegistryState) -> Bool {
        let estimate = (state.fileCount + state.holderCount) * bytesPerLine.withLockedValue { $0 }
        return journal.file.length > max(compactionThreshold, 2 * estimate)
    }

    /// Rewrites `path` as the lines that rebuild `files`, atomically, a chunk at a time; returns
    /// the average bytes of a line.
    private static func compact(_ state: RegistryState, into path: String) throws -> Int {
        var entries = state.allFiles.makeIterator()
        var count = (lines: 0, bytes: 0)
        let chunks = AnyIterator<[UInt8]> {
            var chunk: [UInt8] = []
            while chunk.count < 1 << 20, let (file, entry) = entries.next() {
                for line in snapshot(file, entry) {
                    chunk.append(contentsOf: line.text.utf8)
                    chunk.append(UInt8(ascii: "\n"))
                    count.lines += 1
                }
            }
            count.bytes += chunk.count
            return chunk.isEmpty ? nil : chunk
        }
        try FileIO.replaceAtomically(path, chunks: chunks, mode: 0o644)
        return count.lines == 0 ? 200 : count.bytes / count.lines
    }

    /// The journal lines that rebuild one file: its claims, their holders, then withdrawals.
    private static func snapshot(_ file: RootKey, _ entry: EntryView) -> [JournalLine] {
        var lines: [JournalLine] = []
        let claims = entry.claims.sorted { $0.key < $1.key }
        for (signer, claim) in claims {
            lines.append(.claim(file: file, size: claim.size, signer: signer, signerFingerprint: Fingerprint(claim.signerFingerprint) ?? .none, fileName: claim.name))
        }
        for holder in entry.holders.sorted(by: { ($0.record.address, $0.record.name) < ($1.record.address, $1.record.name) }) {
            lines.append(.hold(file: file, signer: holder.signer, address: holder.record.address, name: holder.record.name, fingerprint: Fingerprint(verified: holder.record.fingerprint)))
        }
        for (signer, claim) in claims where claim.withdrawn { lines.append(.withdraw(file: file, signer: signer)) }
        if entry.withdrawn { lines.append(.withdraw(file: file, signer: nil)) }
        return lines
    }
}

/// A change that came after the registry was closed: the tracker is stopping, and it was not recorded.
public struct RegistryClosed: Error, CustomStringConvertible {
    public let path: String

    public var description: String { "\(path) is closed: the tracker is stopping" }
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
