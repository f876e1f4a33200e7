import ArgumentParser
import Dispatch
import FileIO
import Foundation
import Logging
import MTorrentFormat
import NIOCore
import NIOPosix
import PKI
import TLS
import Tracker

@main
struct TrackerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tracker",
        abstract: "Run a MiniTorrent tracker: it records which peers hold which file, over mutual TLS.",
        discussion: "SIGHUP reloads the CA certificate, the CRL and the ACL; SIGINT or SIGTERM stops the tracker. See config/tracker.conf.example."
    )

    @Argument(help: "Address to listen on, ip:port (port 0 picks a free port).") var address: String
    @Option(help: ArgumentHelp("The PKI folder.", valueName: "dir")) var pki: String?
    @Option(help: "The tracker's certificate name (issued/NAME.crt and .key).") var name: String?
    @Option(help: ArgumentHelp("An access control list; without one every authenticated peer may share and get.", valueName: "file")) var acl: String?
    @Option(help: ArgumentHelp("Where seeders.txt lives.", valueName: "dir")) var data: String?
    @Option(help: ArgumentHelp("A configuration file (key = value).", valueName: "file")) var config: String?
    @Option(help: "Seconds a holder stays listed without a heartbeat.") var ttl: Int?
    @Option(help: "TLS library: \(TLSBackend.available.map(\.rawValue).joined(separator: " or ")).") var tlsBackend: String?

    func run() async throws {
        guard let listen = TrackerAddress(address, allowingPortZero: true) else {
            throw ValidationError("'\(address)' is not ip:port")
        }
        let file = try config.map { try ConfigFile(path: $0, knownKeys: TrackerConfiguration.configFileKeys) }
        let backendName = tlsBackend ?? file?.string("tls-backend") ?? TLSBackend.openssl.rawValue
        guard let backend = TLSBackend(rawValue: backendName), TLSBackend.available.contains(backend) else {
            throw ValidationError("TLS backend '\(backendName)' is not in this build; use \(TLSBackend.available.map(\.rawValue).joined(separator: " or ")).")
        }
        var settings = TrackerConfiguration(
            host: listen.host, port: Int(listen.port), pki: PKILayout(folder: pki ?? file?.string("pki") ?? "./pki"),
            name: name ?? file?.string("name") ?? "tracker", aclPath: acl ?? file?.string("acl"),
            dataFolder: data ?? file?.string("data") ?? "./tracker-data"
        )
        settings.tlsBackend = backend
        if let value = try ttl ?? file?.integer("ttl", in: 5...86400) { settings.timeToLive = TimeInterval(value) }
        if let value = try file?.integer("max-connections", in: 1...1_000_000) { settings.maximumConnections = value }
        if let value = try file?.integer("idle-timeout", in: 5...86400) { settings.idleTimeout = Int64(value) }
        if let value = try file?.integer("handshake-timeout", in: 1...300) { settings.handshakeTimeout = Int64(value) }
        let level = Logger.Level(rawValue: file?.string("log-level") ?? "info") ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "tracker")
        let server = try TrackerServer(configuration: settings, logger: logger)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        let bound = try server.start(group: group)
        say("tracker '\(settings.name)' listening on \(TrackerServer.format(bound)); registry \(server.registry.path)")
        await waitForSignals(server: server, logger: logger)
        server.stop()
        try await group.shutdownGracefully()
        say("tracker stopped")
    }

    /// Reloads on SIGHUP; returns on SIGINT or SIGTERM.
    private func waitForSignals(server: TrackerServer, logger: Logger) async {
        let queue = DispatchQueue(label: "signals")
        for signalNumber in [SIGHUP, SIGINT, SIGTERM] { signal(signalNumber, SIG_IGN) }
        let sources = [SIGHUP, SIGINT, SIGTERM].map { DispatchSource.makeSignalSource(signal: $0, queue: queue) }
        sources[0].setEventHandler {
            do {
                try server.reload()
            } catch {
                logger.error("reload failed; the previous CA, CRL and ACL stay in force", metadata: ["error": "\(error)"])
            }
        }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let once = OnceFlag()
            for source in sources.dropFirst() {
                source.setEventHandler {
                    guard once.claim() else { return }
                    logger.info("stopping")
                    continuation.resume()
                }
            }
            for source in sources { source.resume() }
        }
        withExtendedLifetime(sources) {}
    }
}

/// Writes a line to standard output at once: scripts read the listening line to learn the port.
private func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

/// True exactly once.
final class OnceFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var claimed = false

    func claim() -> Bool {
        lock.withLock {
            defer { claimed = true }
            return !claimed
        }
    }
}
