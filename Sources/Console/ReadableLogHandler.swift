import Foundation
import Logging

/// The programs' log lines, for people reading a terminal or a journal: one line per event on
/// standard error, `time level label: message key=value …` with the keys in order, written under
/// the screen's lock so a line never lands inside a progress line or after the prompt. At info and
/// notice a line is cut at ``maximumLength`` characters; warnings and errors are kept whole.
struct ReadableLogHandler: LogHandler {
    /// Longest info or notice line.
    static let maximumLength = 160

    let label: String
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var all = event.metadata.map { metadata.merging($0) { _, new in new } } ?? metadata
        if let error = event.error { all["error"] = "\(error)" }
        let text = Self.format(time: Date(), level: event.level, label: label, message: "\(event.message)", metadata: all)
        Screen.state.withLockedValue { screen in
            if screen.progressShown {
                Screen.writeError(Screen.eraseLine)
                screen.progressShown = false
            }
            let promptShown = screen.prompt != nil && screen.promptShown
            if promptShown { Screen.writeOutput(Screen.eraseLine) }
            Screen.writeError(text + "\n")
            if promptShown, let prompt = screen.prompt { Screen.writeOutput(prompt) }
        }
    }

    /// One log line; a value with spaces or quotes is quoted.
    static func format(time: Date, level: Logger.Level, label: String, message: String, metadata: Logger.Metadata) -> String {
        var text = "\(timestamp(time)) \(level) \(label): \(message)"
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
            let value = "\(value)"
            let plain = !value.isEmpty && !value.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" })
            text += " \(key)=" + (plain ? value : "\"" + value.replacingOccurrences(of: "\"", with: "\\\"") + "\"")
        }
        text = String(text.map { $0.isNewline ? " " : $0 })
        if level <= .notice, text.count > maximumLength { text = String(text.prefix(maximumLength - 1)) + "…" }
        return text
    }

    private static func timestamp(_ time: Date) -> String {
        var seconds = time_t(time.timeIntervalSince1970)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
            Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec)
        )
    }
}
