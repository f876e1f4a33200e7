import Foundation
import Synchronization

/// A one-line progress display on a terminal's standard error: percentage, bytes and rate,
/// redrawn at most five times a second. Absent when standard error is not a terminal.
final class ProgressLine: Sendable {
    private let label: String
    private let total: UInt64
    private let started = Date()
    private let lastDraw = Mutex(Date.distantPast)

    /// `nil` when standard error is not a terminal, so scripts and logs stay clean.
    static func make(label: String, total: UInt64) -> ProgressLine? {
        isatty(STDERR_FILENO) == 1 ? ProgressLine(label: label, total: total) : nil
    }

    private init(label: String, total: UInt64) {
        self.label = label
        self.total = total
    }

    func update(done: UInt64) {
        let now = Date()
        let draw = lastDraw.withLock { last in
            guard now.timeIntervalSince(last) >= 0.2 || done == total else { return false }
            last = now
            return true
        }
        guard draw else { return }
        let seconds = max(now.timeIntervalSince(started), 0.001)
        let percent = total == 0 ? 100 : Double(done) * 100 / Double(total)
        let line = String(format: "\r%@: %5.1f%%  %.0f/%.0f MB  %.0f MB/s", label, percent, Double(done) / 1e6, Double(total) / 1e6, Double(done) / seconds / 1e6)
        FileHandle.standardError.write(Data(line.utf8))
    }

    func finish() {
        FileHandle.standardError.write(Data("\n".utf8))
    }
}
