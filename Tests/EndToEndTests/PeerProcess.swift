import Foundation
import Synchronization

/// A `peer` process from the built binary, driven line by line through its standard input.
final class PeerProcess {
    let process = Process()
    private let input = Pipe()
    private let output = Pipe()
    private let errors = Pipe()
    private var buffered = Data()
    /// The address it serves other peers on, from its start-up line.
    private(set) var servingAddress = ""
    private let logged = PeerLog()

    /// What the peer has written to its log (standard error) so far.
    var log: String { logged.text }

    /// Where it serves its metrics, when started with `--metrics` (printed before it serves).
    var metricsURL: String? {
        let text = log
        return text.range(of: "metrics on ").map { String(text[$0.upperBound...].prefix { $0 != "\n" }) }
    }

    /// `fileSizeLimit` starts the peer under that RLIMIT_FSIZE (bytes), as a full disk would stop it.
    init(folder: String, name: String, trackers: [String], pki: String, extra: [String] = [], fileSizeLimit: Int? = nil) throws {
        let peer = Command.productsFolder.appendingPathComponent("peer")
        let arguments = ["127.0.0.1:0"] + trackers + ["--pki", pki, "--name", name, "--state", "\(folder)/state-\(name)"] + extra
        if let fileSizeLimit {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/prlimit")
            process.arguments = ["--fsize=\(fileSizeLimit)", peer.path] + arguments
        } else {
            process.executableURL = peer
            process.arguments = arguments
        }
        process.currentDirectoryURL = URL(fileURLWithPath: folder)
        process.standardInput = input
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let deadline = Date() + 20
        while Date() < deadline {
            let chunk = errors.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            logged.append(chunk)
            let text = logged.text
            if let range = text.range(of: "serving on ") {
                servingAddress = String(text[range.upperBound...].prefix { $0 != "\n" })
                break
            }
        }
        // Keep reading the log so the peer never blocks on a full pipe. A thread of its own that
        // ends at end of file, not a readability handler: a dispatch source left on a pipe that is
        // closed when this object goes away can crash the whole test process.
        let logged = self.logged
        let handle = errors.fileHandleForReading
        Thread.detachNewThread {
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { return }
                logged.append(chunk)
            }
        }
    }

    /// Whether a log line holding every one of `parts` appears within `seconds`.
    func logShows(_ parts: String..., within seconds: Double = 5) -> Bool {
        let deadline = Date() + seconds
        repeat {
            if log.split(separator: "\n").contains(where: { line in parts.allSatisfy { line.contains($0) } }) { return true }
            usleep(50_000)
        } while Date() < deadline
        return false
    }

    /// Sends one command and returns the one result line it prints ("EOF" if the peer has exited).
    func run(_ command: String, timeout: TimeInterval = 60) throws -> String {
        guard send(command) else { return "EOF" }
        return answer(timeout: timeout)
    }

    /// Sends one command without waiting for its result; false if the peer has exited.
    func send(_ command: String) -> Bool {
        signal(SIGPIPE, SIG_IGN)
        do {
            try input.fileHandleForWriting.write(contentsOf: Data((command + "\n").utf8))
            return true
        } catch {
            return false
        }
    }

    /// The next result line ("EOF" if the peer has exited, "TIMEOUT" if none came in time).
    func answer(timeout: TimeInterval = 60) -> String {
        let deadline = Date() + timeout
        while Date() < deadline {
            if let newline = buffered.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffered[..<newline], as: UTF8.self)
                buffered.removeSubrange(...newline)
                return line
            }
            // Wait for output no longer than the deadline: a silent peer must not hold the test.
            var ready = pollfd(fd: output.fileHandleForReading.fileDescriptor, events: Int16(POLLIN), revents: 0)
            let milliseconds = Int32(max(1, min(deadline.timeIntervalSinceNow * 1000, 1000)))
            guard poll(&ready, 1, milliseconds) > 0 else { continue }
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { return "EOF" }
            buffered.append(chunk)
        }
        return "TIMEOUT"
    }

    /// Closes standard input: no more commands.
    func closeInput() {
        try? input.fileHandleForWriting.close()
    }

    /// Closes standard input and waits for the exit status.
    func finish() -> Int32 {
        try? input.fileHandleForWriting.close()
        let deadline = Date() + 20
        while process.isRunning, Date() < deadline { usleep(20_000) }
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        return process.terminationStatus
    }

    deinit {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }
}

/// The log lines a peer process wrote, gathered as they arrive.
final class PeerLog: Sendable {
    private let bytes = Mutex(Data())

    func append(_ chunk: Data) {
        bytes.withLock { $0.append(chunk) }
    }

    var text: String { bytes.withLock { String(decoding: $0, as: UTF8.self) } }
}
