import FileIO
import Foundation
import Wire

/// The queue between the registry and its journal's writer thread (group commit): every change
/// queued while one write and fdatasync run goes out with the others in the next, so a disk sync
/// never runs on an event loop or under the registry's lock, and each change is answered only once
/// its lines are durable.
///
/// Changes are queued in the order the registry applied them (under its lock). Only the writer
/// thread touches the file.
final class GroupCommitLog: @unchecked Sendable {
    /// One change waiting to be written: its lines, the entries it replaced (to undo it if it
    /// cannot be made durable), and whom to tell.
    struct Change {
        let lines: [String]
        let replaced: [(FileID, RegistryState.Entry?)]
        let done: @Sendable ((any Error)?) -> Void
    }

    private let condition = NSCondition()
    private var queue: [Change] = []
    private var stopped = false
    /// The journal file; only the writer thread uses it.
    private(set) var file: AppendLog

    init(file: AppendLog) {
        self.file = file
    }

    /// Queues a change (the caller holds the registry's lock, which keeps the queue in its order);
    /// false once stopped, when nothing more is written.
    func enqueue(_ change: Change) -> Bool {
        condition.withLock {
            guard !stopped else { return false }
            queue.append(change)
            condition.signal()
            return true
        }
    }

    /// Blocks until a change is queued; false once stopped with nothing left.
    func waitForWork() -> Bool {
        condition.withLock {
            while queue.isEmpty && !stopped { condition.wait() }
            return !queue.isEmpty
        }
    }

    /// Takes every queued change, oldest first.
    func take() -> [Change] {
        condition.withLock {
            defer { queue = [] }
            return queue
        }
    }

    /// Lets the writer thread end once the queue is empty.
    func stop() {
        condition.withLock {
            stopped = true
            condition.signal()
        }
    }

    /// Writes the lines of `changes` in one append and sync (writer thread only).
    func write(_ changes: [Change]) throws {
        try file.append(changes.flatMap(\.lines))
    }

    /// Starts appending to a new journal file, after a compaction renamed it into place (writer thread only).
    func reopen() throws {
        file = try AppendLog(path: file.path, write: file.write)
    }
}
