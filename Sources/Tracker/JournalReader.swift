import FileIO
import Foundation

/// Reads `seeders.txt` for a tracker's start: a thread of its own reads and parses the lines in
/// batches while the caller applies the batch before, so a large registry starts on two cores.
/// At most a few batches wait between the two, so memory stays bounded whatever the journal's size.
enum JournalReader {
    /// Parsed lines in journal order, with where they end.
    struct Batch {
        var lines: [JournalLine] = []
        /// The number of the batch's last line, from 1.
        var lastLineNumber = 0
        /// The journal's bytes up to the end of the batch's last line.
        var bytesThrough = 0
    }

    /// Lines per batch, and batches that may wait for the caller.
    static let linesPerBatch = 8192
    static let batchesAhead = 4

    /// Calls `apply` with every batch of `path` in order; returns the length of the whole lines (a
    /// torn last line, after the last line feed, is not read). A line that does not parse throws
    /// ``JournalError`` naming it, once the lines before it were applied.
    static func read(_ path: String, _ apply: (Batch) -> Void) throws -> Int {
        let queue = BatchQueue(capacity: batchesAhead)
        let finished = DispatchSemaphore(value: 0)
        let reader = Thread {
            defer { finished.signal() }
            var batch = Batch()
            batch.lines.reserveCapacity(linesPerBatch)
            do {
                let wholeBytes = try FileIO.forEachLine(path, maximumLineLength: JournalLine.maximumLength) { line, number in
                    guard let parsed = JournalLine(line) else {
                        throw JournalError(path: path, line: number, text: String(decoding: line, as: UTF8.self))
                    }
                    batch.lines.append(parsed)
                    batch.lastLineNumber = number
                    batch.bytesThrough += line.count + 1
                    if batch.lines.count == linesPerBatch {
                        let next = Batch(lines: [], lastLineNumber: number, bytesThrough: batch.bytesThrough)
                        guard queue.push(.batch(batch)) else { throw CancellationError() }
                        batch = next
                        batch.lines.reserveCapacity(linesPerBatch)
                    }
                }.wholeLines
                if !batch.lines.isEmpty, !queue.push(.batch(batch)) { return }
                _ = queue.push(.end(wholeBytes: wholeBytes))
            } catch {
                if !batch.lines.isEmpty, !queue.push(.batch(batch)) { return }
                _ = queue.push(.failure(error))
            }
        }
        reader.name = "seeders.txt reader"
        reader.start()
        defer {
            queue.close()
            finished.wait()
        }
        while true {
            switch queue.pop() {
            case .batch(let batch): apply(batch)
            case .end(let wholeBytes): return wholeBytes
            case .failure(let error): throw error
            }
        }
    }

    private enum Item {
        case batch(Batch)
        case end(wholeBytes: Int)
        case failure(any Error)
    }

    /// A bounded queue from the reading thread to the caller; closing it stops the reader.
    private final class BatchQueue: @unchecked Sendable {
        private let condition = NSCondition()
        private var items: [Item] = []
        private var closed = false
        private let capacity: Int

        init(capacity: Int) {
            self.capacity = capacity
        }

        /// Waits for room; false once the caller has stopped reading.
        func push(_ item: Item) -> Bool {
            condition.lock()
            defer { condition.unlock() }
            while items.count >= capacity, !closed { condition.wait() }
            guard !closed else { return false }
            items.append(item)
            condition.broadcast()
            return true
        }

        func pop() -> Item {
            condition.lock()
            defer { condition.unlock() }
            while items.isEmpty { condition.wait() }
            condition.broadcast()
            return items.removeFirst()
        }

        func close() {
            condition.lock()
            closed = true
            condition.broadcast()
            condition.unlock()
        }
    }
}
