import Dispatch
import Foundation
import Logging
import NIOConcurrencyHelpers

/// What the long-running programs (`tracker`, `peer`) share: logs to standard error at a level
/// named in their configuration, a line on standard output written at once, and waiting for
/// the signals that stop or reload them.
public enum ProgramSupport {
    /// Sends swift-log output to standard error at `levelName` (trace … critical; default info).
    public static func bootstrapLogging(levelName: String?) throws {
        guard let level = Logger.Level(rawValue: levelName ?? "info") else {
            throw ProgramSupportError("log level '\(levelName ?? "")' is not one of trace, debug, info, notice, warning, error, critical")
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }

    /// Writes one line to standard output at once: scripts read such lines to learn ports.
    public static func say(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    /// Calls `reload` on every SIGHUP for as long as the returned source is kept.
    public static func onReload(_ reload: @escaping @Sendable () -> Void) -> DispatchSourceSignal {
        signal(SIGHUP, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: DispatchQueue(label: "reload"))
        source.setEventHandler(handler: reload)
        source.resume()
        return source
    }

    /// Returns on SIGINT or SIGTERM; calls `reload` on every SIGHUP, if given.
    public static func waitForTermination(reload: (@Sendable () -> Void)? = nil) async {
        let queue = DispatchQueue(label: "signals")
        let stopSignals = [SIGINT, SIGTERM]
        for number in stopSignals { signal(number, SIG_IGN) }
        let sources = stopSignals.map { DispatchSource.makeSignalSource(signal: $0, queue: queue) }
        let reloading = reload.map(onReload)
        defer { withExtendedLifetime(reloading) {} }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumed = NIOLockedValueBox(false)
            for source in sources.prefix(stopSignals.count) {
                source.setEventHandler {
                    let first = resumed.withLockedValue { done in
                        defer { done = true }
                        return !done
                    }
                    if first { continuation.resume() }
                }
            }
            for source in sources { source.resume() }
        }
        withExtendedLifetime(sources) {}
    }
}

/// A setting the programs cannot use.
public struct ProgramSupportError: Error, CustomStringConvertible {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}
