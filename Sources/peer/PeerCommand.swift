import ArgumentParser
import Console
import FileIO
import Foundation
import Logging
import MTorrentFormat
import NIOCore
import NIOPosix
import PKI
import Peer
import TLS

@main
struct PeerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "peer",
        abstract: "Run a MiniTorrent peer: share, get and remove files, serving them to other peers over mutual TLS.",
        discussion: """
            Commands, one per line on standard input:
              share <file_path> <mtorrent_destination>
              get <mtorrent_file> <save_location>
              remove <mtorrent_file>
              status
              exit
            Each prints one line: 'SUCCESS: …' or 'FAILURE: CODE message'. Logs go to standard error.
            At the end of input the peer exits 0 if every command succeeded, 1 otherwise, unless
            --keep-seeding keeps it serving until SIGINT or SIGTERM. SIGHUP rereads the CA and CRL.
            """
    )

    @Argument(help: "Address to serve other peers on, ip:port (port 0 picks a free port).") var address: String
    @Argument(help: "The first tracker, host:port.") var tracker1: String
    @Argument(help: "The second tracker, host:port.") var tracker2: String
    @Option(help: ArgumentHelp("The PKI folder.", valueName: "dir")) var pki: String?
    @Option(help: "The peer's certificate name (issued/NAME.crt and .key).") var name: String?
    @Option(help: ArgumentHelp("Where the share index lives.", valueName: "dir")) var state: String?
    @Flag(help: "After the commands, keep serving until SIGINT or SIGTERM.") var keepSeeding = false
    @Option(help: "TLS library: \(TLSBackend.available.map(\.rawValue).joined(separator: " or ")).") var tlsBackend: String?
    @Option(help: ArgumentHelp("A configuration file (key = value).", valueName: "file")) var config: String?

    func run() async throws {
        guard let listen = TrackerAddress(address, allowingPortZero: true) else { throw ValidationError("'\(address)' is not ip:port") }
        guard let first = TrackerAddress(tracker1), let second = TrackerAddress(tracker2) else {
            throw ValidationError("trackers must be given as host:port")
        }
        let file = try config.map { try ConfigFile(path: $0, knownKeys: PeerConfiguration.configFileKeys) }
        let backend = try TLSBackend.named(tlsBackend ?? file?.string("tls-backend") ?? TLSBackend.openssl.rawValue)
        let peerName = name ?? file?.string("name") ?? "peer"
        var settings = PeerConfiguration(
            host: listen.host, port: Int(listen.port), trackers: [first, second], pki: PKILayout(folder: pki ?? file?.string("pki") ?? "./pki"),
            name: peerName, stateFolder: state ?? file?.string("state") ?? "./peer-state-\(peerName)"
        )
        settings.tlsBackend = backend
        if let seconds = try file?.integer("heartbeat", in: 5...3600) { settings.heartbeatInterval = Int64(seconds) }
        if let seconds = try file?.integer("tracker-timeout", in: 1...300) { settings.trackerTimeout = Int64(seconds) }
        if let file { settings.limits = try Self.limits(from: file) }
        try ProgramSupport.bootstrapLogging(levelName: file?.string("log-level"))
        // Past a file-size limit a write fails with a clear error instead of killing the peer.
        signal(SIGXFSZ, SIG_IGN)
        var logger = Logger(label: "peer")
        logger[metadataKey: "me"] = "\(peerName)"
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        let threadPool = NIOThreadPool(numberOfThreads: 2)
        threadPool.start()
        let node = try PeerNode(configuration: settings, group: group, threadPool: threadPool, logger: logger)
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
        var allSucceeded = true
        var exitRequested = false
        while !exitRequested, let line = readLine() {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard let command = words.first else { continue }
            let outcome: Result<String, CommandFailure>
            switch (command, words.count) {
            case ("share", 3):
                outcome = await Result { () async throws(CommandFailure) in try await node.share(file: words[1], mtorrent: words[2]) }
            case ("get", 3):
                let progress = ProgressLine.make(label: "get \(words[1])")
                var report: (@Sendable (UInt64, UInt64) -> Void)?
                if let progress { report = { done, total in progress.update(done: done, total: total) } }
                let reporter = report
                outcome = await Result { () async throws(CommandFailure) in
                    try await node.get(mtorrent: words[1], saveTo: words[2], progress: reporter)
                }
                progress?.finish()
            case ("remove", 2):
                outcome = await Result { () async throws(CommandFailure) in try await node.remove(mtorrent: words[1]) }
            case ("status", 1):
                outcome = .success(node.status())
            case ("exit", 1):
                exitRequested = true
                outcome = .success("leaving the trackers")
            default:
                outcome = .failure(CommandFailure(.invalidArguments, "usage: share <file_path> <mtorrent_destination> | get <mtorrent_file> <save_location> | remove <mtorrent_file> | status | exit"))
            }
            switch outcome {
            case .success(let message): ProgramSupport.say("SUCCESS: \(message)")
            case .failure(let failure):
                allSucceeded = false
                ProgramSupport.say("FAILURE: \(failure.code) \(failure.message)")
            }
        }
        if keepSeeding && !exitRequested {
            logger.info("keeping on seeding until SIGINT or SIGTERM")
            await ProgramSupport.waitForTermination()
        }
        await node.stop()
        try await group.shutdownGracefully()
        try await threadPool.shutdownGracefully()
        if !allSucceeded { throw ExitCode(1) }
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
        return limits
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
