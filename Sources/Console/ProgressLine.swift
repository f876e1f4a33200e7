import Foundation
import NIOConcurrencyHelpers

/// A one-line progress display on a terminal's standard error: percentage, bytes, rate and ETA,
/// redrawn at most five times a second. Absent when standard error is not a terminal. Of several
/// running at once, only the first to draw does; when it finishes, its line is erased and the
/// next one takes over.
public final class ProgressLine: Sendable {
    private let label: String
    private let started = Date()
    private let lastDraw = NIOLockedValueBox(Date.distantPast)

    /// `nil` when standard error is not a terminal, so scripts and logs stay clean.
    public static func make(label: String) -> ProgressLine? {
        isatty(STDERR_FILENO) == 1 ? ProgressLine(label: label) : nil
    }

    private init(label: String) {
        self.label = label
    }

    /// Shows that `done` of `total` bytes are through.
    public func update(done: UInt64, total: UInt64) {
        let now = Date()
        let draw = lastDraw.withLockedValue { last in
            guard now.timeIntervalSince(last) >= 0.2 || done == total else { return false }
            last = now
            return true
        }
        guard draw else { return }
        let seconds = max(now.timeIntervalSince(started), 0.001)
        let percent = total == 0 ? 100 : Double(done) * 100 / Double(total)
        let rate = Double(done) / seconds
        let eta = rate > 0 ? Double(total - min(done, total)) / rate : 0
        let line = String(
            format: Screen.eraseLine + "%@: %5.1f%%  %.0f/%.0f MB  %.0f MB/s  ETA %.0f s ", label, percent, Double(done) / 1e6, Double(total) / 1e6, rate / 1e6, eta
        )
        let me = ObjectIdentifier(self)
        Screen.state.withLockedValue { screen in
            guard screen.progressOwner == nil || screen.progressOwner == me else { return }
            screen.progressOwner = me
            screen.progressShown = true
            Screen.writeError(line)
        }
    }

    /// Erases the line if this one is shown and lets another progress line draw.
    public func finish() {
        let me = ObjectIdentifier(self)
        Screen.state.withLockedValue { screen in
            guard screen.progressOwner == me else { return }
            if screen.progressShown { Screen.writeError(Screen.eraseLine) }
            screen.progressOwner = nil
            screen.progressShown = false
        }
    }
}
