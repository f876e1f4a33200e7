import ArgumentParser
import Console
import FileIO
import Foundation
import Logging
import MTorrentFormat
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PKI
import Peer
import ServiceLifecycle
import Telemetry
import TLS

@main
struct PeerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "peer",
        abstract: "Run a MiniTorrent peer: share, get and remove files, serving them to other peers over mutual TLS.",
        discussion: """
            Commands, one per line on standard input (quote names with spaces, as in a shell):
              share <file_path> <mtorrent_destination>
              get <mtorrent_file> <save_location>     (a folder receives the .mtorrent's file name)
              remove <mtorrent_file>                   (its signer or an admin withdraws it from the network)
              allow <mtorrent_file>                    (an admin lets a withdrawn file be shared again)
              status
              help
              exit
            Each prints one line: 'SUCCESS: …' or 'FAILURE: CODE message'. Logs go to standard error.
            Commands run at once, side by side; one that names a file an earlier running command
            names waits for it. exit and the end of input wait for the running commands; the peer
            then exits 0 if every command succeeded, 1 otherwise, unless --keep-seeding keeps it
            serving until SIGINT or SIGTERM. SIGINT or SIGTERM while commands run ends the running downloads at once
            (their .part files stay for the same get to resume), leaves the trackers and exits. SIGHUP rereads the CA, the CRL and the peer's own certificate and key (a change to those files does too); newer CRLs also come from the trackers.
            """,
        version: Release.version
    )

    @Argument(help: "Address to serve other peers on, ip:port (port 0 picks a free port).") var address: String
    @Argument(help: ArgumentHelp("The trackers, host:port each: one or more (at most \(MTorrent.maximumTrackers)), all asked at once; without any, the config file's 'trackers'.", valueName: "tracker")) var trackers: [String] = []
    @Option(help: ArgumentHelp("The PKI folder.", valueName: "dir")) var pki: String?
    @Option(help: "The peer's certificate name (issued/NAME.crt and .key).") var name: String?
    @Option(help: ArgumentHelp("Where the share index lives.", valueName: "dir")) var state: String?
    @Flag(help: "After the commands, keep serving until SIGINT or SIGTERM.") var keepSeeding = false
    @Option(help: "TLS library: \(TLSBackend.available.map(\.rawValue).joined(separator: " or ")).") var tlsBackend: String?
    @Option(help: ArgumentHelp("A configuration file (key = value).", valueName: "file")) var config: String?
    @Option(help: "trace, debug, info, notice, warning, error or critical (default info).") var logLevel: String?
    @Option(help: ArgumentHelp("Serve Prometheus metrics over plain HTTP at http://ip:port/metrics (off by default; prefer a loopback address).", valueName: "ip:port"))
    var metrics: String?
    @Flag(help: "Answer every command with one JSON object on one line (ok, code, message and the command's fields).") var json = false

    func run() async throws {
        guard let listen = TrackerAddress(address, allowingPortZero: true) else { throw ValidationError("'\(address)' is not ip:port") }
        let file = try config.map { try ConfigFile(path: $0, knownKeys: PeerConfiguration.configFileKeys) }
        let trackerAddresses = try Self.trackers(trackers.isEmpty ? (file?.string("trackers") ?? "").split(separator: " ").map(String.init) : trackers)
        let backend = try TLSBackend.named(tlsBackend ?? file?.string("tls-backend") ?? TLSBackend.openssl.rawValue)
        let peerName = name ?? file?.string("name") ?? "peer"
        var settings = PeerConfiguration(
            host: listen.host, port: Int(listen.port), trackers: trackerAddresses, pki: PKILayout(folder: pki ?? file?.string("pki") ?? "./pki"),
            name: peerName, stateFolder: state ?? file?.string("state") ?? "./peer-state-\(peerName)"
        )
        settings.tlsBackend = backend
        if let seconds = try file?.integer("heartbeat", in: 5...3600) { settings.heartbeatInterval = Int64(seconds) }
        if let seconds = try file?.integer("tracker-timeout", in: 1...300) { settings.trackerTimeout = Int64(seconds) }
        if let seconds = try file?.integer("crl-poll-interval", in: 1...3600) { settings.revocationPollInterval = Int64(seconds) }
        if let seconds = try file?.integer("file-watch-interval", in: 1...3600) { settings.fileWatchInterval = Int64(seconds) }
        if let file { settings.limits = try Self.limits(from: file) }
        let metricsAddress = try (metrics ?? file?.string("metrics")).map { text in
            guard let address = TrackerAddress(text, allowingPortZero: true) else { throw ValidationError("metrics: '\(text)' is not ip:port") }
            return address
        }
        try ProgramSupport.bootstrapLogging(levelName: logLevel ?? file?.string("log-level"))
        // Before anything counts: without --metrics every counter stays a no-op.
        let registry = metricsAddress.map { _ in Telemetry.bootstrap() }
        let keepSeeding = try self.keepSeeding || file?.flag("keep-seeding") == true
        let json = try self.json || file?.flag("json") == true
        let stopTimeout = try file?.integer("stop-timeout", in: 1...3600) ?? 30
        // Past a file-size limit a write fails with a clear error instead of killing the peer.
        signal(SIGXFSZ, SIG_IGN)
        var logger = Logger(label: "peer")
        logger[metadataKey: "me"] = "\(peerName)"
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        let threadPool = NIOThreadPool(numberOfThreads: 2)
        threadPool.start()
        let node = try PeerNode(configuration: settings, group: group, threadPool: threadPool, logger: logger)
        // The metrics first: an address that is taken stops the peer before it announces anything.
        var endpoint: MetricsEndpoint?
        if let registry, let metricsAddress {
            let metricsEndpoint = MetricsEndpoint(registry: registry, beforeScrape: { node.recordMetrics() })
            let address = try metricsEndpoint.start(host: metricsAddress.host, port: Int(metricsAddress.port), group: group)
            endpoint = metricsEndpoint
            FileHandle.standardError.write(Data("peer '\(peerName)' metrics on http://\(metricsAddress.host):\(address.port ?? 0)\(MetricsEndpoint.path)\n".utf8))
        }
        do {
            try await node.start()
        } catch let failure as CommandFailure {
            FileHandle.standardError.write(Data("peer '\(peerName)' cannot start: \(failure.code) \(failure.message)\n".utf8))
            try? await group.shutdownGracefully()
            try? await threadPool.shutdownGracefully()
            throw ExitCode(1)
        }
        let reloading = ProgramSupport.onReload { [logger] in
            do {
                try node.reload()
            } catch {
                logger.error("could not reload the CA and CRL; keeping the old ones: \(error)")
            }
        }
        defer { withExtendedLifetime(reloading) {} }
        FileHandle.standardError.write(Data("peer '\(peerName)' serving on \(listen.host):\(node.servingPort)\n".utf8))
        let shell = Shell(node: node, json: json)
        let outcome = SessionOutcome()
        let session = ClosureService { [json, logger] in
            try await Self.runCommands(
                shell: shell, node: node, group: group, json: json, keepSeeding: keepSeeding, stopTimeout: stopTimeout, outcome: outcome, logger: logger
            )
        }
        // The service ending by itself (end of input, `exit`) ends the group as a signal would.
        let services = [ServiceGroupConfiguration.ServiceConfiguration(service: session, successTerminationBehavior: .gracefullyShutdownGroup)]
        try await ServiceGroup(configuration: ServiceGroupConfiguration(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)).run()
        endpoint?.stop()
        await node.stop()
        try await group.shutdownGracefully()
        try await threadPool.shutdownGracefully()
        if !outcome.allSucceeded.withLockedValue({ $0 }) { throw ExitCode(1) }
    }

    /// Whether every command of the session succeeded, for the exit status.
    final class SessionOutcome: Sendable {
        let allSucceeded = NIOLockedValueBox(true)
    }

    /// Runs the commands of standard input until it ends or `exit`, then keeps seeding if asked,
    /// until SIGINT or SIGTERM; a signal while commands run ends the running downloads at once
    /// (their .part files stay for the same get to resume). The caller then leaves the trackers.
    static func runCommands(
        shell: Shell, node: PeerNode, group: EventLoopGroup, json: Bool, keepSeeding: Bool, stopTimeout: Int, outcome: SessionOutcome, logger: Logger
    ) async throws {
        // Whatever a signal's stop waits for (a share still hashing, a tracker that does not
        // answer), it ends within `stop-timeout`.
        Task {
            guard (try? await gracefulShutdown()) != nil else { return }
            Self.exitAfter(seconds: stopTimeout, logger: logger)
        }
        let (lines, feed) = AsyncStream.makeStream(of: InputLine.self)
        let input = await ProgramSupport.standardInputLines(prompt: isatty(STDIN_FILENO) == 1 && !json ? "> " : nil, group: group)
        let reading = Task {
            for await line in input { feed.yield(line) }
            feed.finish()
        }
        let stopRequested = NIOLockedValueBox(false)
        let exitRequested = await withGracefulShutdownHandler {
            var exitRequested = false
            for await input in lines {
                let line: String
                switch input {
                case .text(let text): line = text
                case .tooLong(let limit):
                    shell.report(.failure(CommandFailure(.invalidArguments, "a command line longer than \(limit) bytes was ignored")))
                    continue
                }
                let command: ShellCommand
                do throws(CommandFailure) {
                    guard let parsed = try ShellCommand.parse(line) else { continue }
                    command = parsed
                } catch {
                    shell.report(.failure(error))
                    continue
                }
                if command == .exit {
                    exitRequested = true
                    break
                }
                shell.start(command)
            }
            return exitRequested
        } onGracefulShutdown: {
            logger.notice("stopping: ending the running downloads and leaving the trackers")
            stopRequested.withLockedValue { $0 = true }
            feed.finish()
            node.abortDownloads()
        }
        reading.cancel()
        let allSucceeded = await shell.finish()
        outcome.allSucceeded.withLockedValue { $0 = allSucceeded }
        ProgramSupport.stopPrompt()
        if exitRequested { shell.report(await shell.perform(.exit)) }
        if keepSeeding && !exitRequested && !stopRequested.withLockedValue({ $0 }) {
            logger.info("keeping on seeding until SIGINT or SIGTERM")
            try? await gracefulShutdown()
        }
    }

    /// The tracker addresses given, checked: one or more, as many as a `.mtorrent` may name; one
    /// named twice (as the original's two-tracker command line allows) is asked once.
    static func trackers(_ texts: [String]) throws -> [TrackerAddress] {
        guard !texts.isEmpty else {
            throw ValidationError("name at least one tracker (host:port) after the peer's address, or 'trackers = host:port …' in the config file")
        }
        guard texts.count <= MTorrent.maximumTrackers else {
            throw ValidationError("at most \(MTorrent.maximumTrackers) trackers, not \(texts.count): a .mtorrent names every tracker of its peer")
        }
        var addresses: [TrackerAddress] = []
        for text in texts {
            guard let address = TrackerAddress(text) else { throw ValidationError("tracker '\(text)' is not host:port") }
            if !addresses.contains(address) { addresses.append(address) }
        }
        return addresses
    }

    /// Exits the peer `seconds` from now if it has not stopped by then, as a kill would leave it:
    /// a share still hashing writes no `.mtorrent`, and a download's `.part` is verified again
    /// when the same get resumes.
    static func exitAfter(seconds: Int, logger: Logger) {
        let deadline = Thread {
            Thread.sleep(forTimeInterval: TimeInterval(seconds))
            logger.error("stopping took longer than \(seconds) s (stop-timeout); exiting now, as a kill would: a share still hashing wrote nothing, a download resumes from its .part")
            fflush(nil)
            _exit(1)
        }
        deadline.name = "stop deadline"
        deadline.start()
    }

    /// The limits a configuration file sets (the rest keep their defaults).
    static func limits(from file: ConfigFile) throws -> PeerLimits {
        var limits = PeerLimits()
        if let value = try file.integer("peers-per-download", in: 1...200) { limits.peersPerDownload = value }
        if let value = try file.integer("requests-per-peer", in: 1...64) { limits.requestsPerPeer = value }
        if let value = try file.integer("upload-slots", in: 1...1000) { limits.uploadSlots = value }
        if let value = try file.integer("uploads-per-peer", in: 1...1000) { limits.uploadsPerPeer = value }
        if let value = try file.integer("max-connections", in: 1...100_000) { limits.maximumConnections = value }
        if let value = try file.integer("handshake-timeout", in: 1...300) { limits.handshakeTimeout = Int64(value) }
        if let value = try file.integer("idle-timeout", in: 5...86400) { limits.idleTimeout = Int64(value) }
        if let value = try file.integer("queued-requests", in: 1...1024) { limits.queuedRequestsPerConnection = value }
        if let value = try file.integer("upload-limit", in: 0...Int(Int32.max)) { limits.uploadBytesPerSecond = UInt64(value) * 1024 }
        if let value = try file.integer("stall-timeout", in: 2...600) { limits.stallTimeout = Int64(value) }
        if let value = try file.integer("discovery-interval", in: 1...600) { limits.discoveryInterval = Int64(value) }
        if let value = try file.integer("super-seed-window", in: 0...1_048_576) { limits.superSeedWindowBytes = value * 1024 }
        if let value = try file.integer("super-seed-copies", in: 1...16) { limits.superSeedCopies = value }
        return limits
    }
}

/// Runs the shell's commands side by side: each starts when read, after every earlier command
/// still running that names one of the same paths; each answer is printed whole when it is ready.
final class Shell: Sendable {
    private struct Running {
        let id: Int
        let paths: Set<String>
        let task: Task<Void, Never>
    }

    private struct State {
        var running: [Running] = []
        var finished: Set<Int> = []
        var nextID = 0
        var allSucceeded = true
    }

    private let node: PeerNode
    /// Answers as JSON lines rather than sentences.
    private let json: Bool
    private let folder = FileManager.default.currentDirectoryPath
    private let state = NIOLockedValueBox(State())

    init(node: PeerNode, json: Bool) {
        self.node = node
        self.json = json
    }

    /// Starts `command` once the earlier commands it depends on are done.
    func start(_ command: ShellCommand) {
        let paths = command.paths(relativeTo: folder)
        state.withLockedValue { state in
            state.running.removeAll { state.finished.remove($0.id) != nil }
            let earlier = state.running.filter { !$0.paths.isDisjoint(with: paths) }.map(\.task)
            let id = state.nextID
            state.nextID += 1
            let task = Task { [self] in
                for task in earlier { await task.value }
                report(await perform(command))
                self.state.withLockedValue { _ = $0.finished.insert(id) }
            }
            state.running.append(Running(id: id, paths: paths, task: task))
        }
    }

    /// Prints the answer and remembers a failure for the exit status.
    func report(_ outcome: Result<CommandAnswer, CommandFailure>) {
        switch outcome {
        case .success(let answer): ProgramSupport.say(json ? answer.jsonLine : "SUCCESS: \(answer.message)")
        case .failure(let failure):
            state.withLockedValue { $0.allSucceeded = false }
            ProgramSupport.say(json ? CommandAnswer.jsonLine(of: failure) : "FAILURE: \(failure.code) \(failure.message)")
        }
    }

    /// Waits for every running command; true if every command succeeded.
    func finish() async -> Bool {
        for entry in state.withLockedValue({ $0.running }) { await entry.task.value }
        return state.withLockedValue { $0.allSucceeded }
    }

    /// Carries out one command (`exit` only answers: leaving is the caller's part).
    func perform(_ command: ShellCommand) async -> Result<CommandAnswer, CommandFailure> {
        switch command {
        case .share(let file, let mtorrent):
            return await Result { () async throws(CommandFailure) in try await node.share(file: file, mtorrent: mtorrent) }
        case .get(let mtorrent, let location):
            let progress = json ? nil : ProgressLine.make(label: "get \(mtorrent)")
            var report: (@Sendable (UInt64, UInt64) -> Void)?
            if let progress { report = { done, total in progress.update(done: done, total: total) } }
            let reporter = report
            defer { progress?.finish() }
            return await Result { () async throws(CommandFailure) in try await node.get(mtorrent: mtorrent, saveTo: location, progress: reporter) }
        case .remove(let mtorrent):
            return await Result { () async throws(CommandFailure) in try await node.remove(mtorrent: mtorrent) }
        case .allow(let mtorrent):
            return await Result { () async throws(CommandFailure) in try await node.allow(mtorrent: mtorrent) }
        case .status: return .success(await node.status())
        case .help: return .success(CommandAnswer(ShellCommand.helpText))
        case .exit: return .success(CommandAnswer("leaving the trackers"))
        }
    }
}

extension Result where Failure == CommandFailure {
    init(_ body: () async throws(CommandFailure) -> Success) async {
        do {
            self = .success(try await body())
        } catch {
            self = .failure(error)
        }
    }
}
