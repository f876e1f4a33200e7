import Dispatch
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// What the long-running programs (`tracker`, `peer`) share: logs to standard error at a level
/// named in their configuration, a line on standard output written at once, standard input as
/// lines, and the signal that reloads them (SIGINT and SIGTERM are the service group's).
public enum ProgramSupport {
    /// Sends swift-log output to standard error as readable lines (``ReadableLogHandler``) at
    /// `levelName` (trace … critical; default info).
    public static func bootstrapLogging(levelName: String?) throws {
        guard let level = Logger.Level(rawValue: levelName ?? "info") else {
            throw ProgramSupportError("log level '\(levelName ?? "")' is not one of trace, debug, info, notice, warning, error, critical")
        }
        LoggingSystem.bootstrap { label in ReadableLogHandler(label: label, logLevel: level) }
    }

    /// Writes one line to standard output at once, whole even when several tasks answer at the
    /// same time: scripts read such lines to learn ports and results. On a terminal it first
    /// clears a progress line and the prompt, and shows the prompt again after it.
    public static func say(_ line: String) {
        Screen.state.withLockedValue { screen in
            if screen.progressShown {
                Screen.writeError(Screen.eraseLine)
                screen.progressShown = false
            }
            if let prompt = screen.prompt {
                Screen.writeOutput(Screen.eraseLine + line + "\n" + prompt)
                screen.promptShown = true
            } else {
                Screen.writeOutput(line + "\n")
            }
        }
    }

    /// The lines of standard input (``StandardInput``). With a `prompt` (for a terminal), it is
    /// shown now, after each line read and again after each answer until ``stopPrompt()``.
    public static func standardInputLines(prompt: String?, group: EventLoopGroup) async -> AsyncStream<InputLine> {
        Screen.state.withLockedValue { $0.prompt = prompt }
        let showPrompt: @Sendable () -> Void = {
            Screen.state.withLockedValue { screen in
                guard let prompt = screen.prompt, !screen.promptShown else { return }
                Screen.writeOutput(prompt)
                screen.promptShown = true
            }
        }
        showPrompt()
        return await StandardInput.lines(group: group) {
            Screen.state.withLockedValue { $0.promptShown = false }
            showPrompt()
        }
    }

    /// No more prompt: the program is leaving.
    public static func stopPrompt() {
        Screen.state.withLockedValue { $0.prompt = nil }
    }

    /// Calls `reload` on every SIGHUP for as long as the returned source is kept.
    public static func onReload(_ reload: @escaping @Sendable () -> Void) -> DispatchSourceSignal {
        signal(SIGHUP, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: DispatchQueue(label: "reload"))
        source.setEventHandler(handler: reload)
        source.resume()
        return source
    }
}

/// A setting the programs cannot use.
public struct ProgramSupportError: Error, CustomStringConvertible {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}
