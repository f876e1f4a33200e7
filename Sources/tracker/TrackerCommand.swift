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
import PostgresRegistry
import ServiceLifecycle
import Telemetry
import TLS
import Tracker

@main
struct TrackerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tracker",
        abstract: "Run a MiniTorrent tracker: it records which peers hold which file, over mutual TLS.",
        discussion: """
            SIGHUP reloads the CA certificate, the CRL, the ACL and the tracker's own certificate and key; so does a change to any of those files \
            (looked at every few seconds). SIGINT or SIGTERM stops the tracker gracefully: no new connections or requests, the requests read \
            are answered, the journal is written, all within stop-timeout seconds (10 by default). See config/tracker.conf.example.
            """,
        version: Release.version
    )

    @Argument(help: "Address to listen on, ip:port (port 0 picks a free port).") var address: String
    @Option(help: ArgumentHelp("The PKI folder.", valueName: "dir")) var pki: String?
    @Option(help: "The tracker's certificate name (issued/NAME.crt and .key).") var name: String?
    @Option(help: ArgumentHelp("An access control list; without one every authenticated peer may share and get.", valueName: "file")) var acl: String?
    @Option(help: ArgumentHelp("Where seeders.txt lives.", valueName: "dir")) var data: String?
    @Option(help: ArgumentHelp(
        "A shared registry in PostgreSQL instead of seeders.txt: postgres://USER@HOST:PORT/DB[?sslmode=require|verify-ca|verify-full].",
        valueName: "url"
    )) var registry: String?
    @Option(help: ArgumentHelp("A file holding the registry database's password (else PGPASSWORD).", valueName: "file")) var registryPasswordFile: String?
    @Option(help: ArgumentHelp("CA certificate(s) that sign the registry database's certificate (else the system's).", valueName: "file"))
    var registryCa: String?
    @Option(help: ArgumentHelp("A configuration file (key = value).", valueName: "file")) var config: String?
    @Option(help: "Seconds a holder stays listed without a heartbeat.") var ttl: Int?
    @Option(help: "TLS library: \(TLSBackend.available.map(\.rawValue).joined(separator: " or ")).") var tlsBackend: String?
    @Option(help: "trace, debug, info, notice, warning, error or critical (default info).") var logLevel: String?
    @Option(help: ArgumentHelp("Serve Prometheus metrics over plain HTTP at http://ip:port/metrics (off by default; prefer a loopback address).", valueName: "ip:port"))
    var metrics: String?

    func run() async throws {
        guard let listen = TrackerAddress(address, allowingPortZero: true) else {
            throw ValidationError("'\(address)' is not ip:port")
        }
        let file = try config.map { try ConfigFile(path: $0, knownKeys: TrackerConfiguration.configFileKeys) }
        let backend = try TLSBackend.named(tlsBackend ?? file?.string("tls-backend") ?? TLSBackend.openssl.rawValue)
        var settings = TrackerConfiguration(
            host: listen.host, port: Int(listen.port), pki: PKILayout(folder: pki ?? file?.string("pki") ?? "./pki"),
            name: name ?? file?.string("name") ?? "tracker", aclPath: acl ?? file?.string("acl"),
            dataFolder: data ?? file?.string("data") ?? "./tracker-data"
        )
        settings.tlsBackend = backend
        if let value = try ttl ?? file?.integer("ttl", in: 5...86400) { settings.timeToLive = TimeInterval(value) }
        if let value = try file?.integer("max-connections", in: 1...1_000_000) { settings.maximumConnections = value }
        if let value = try file?.integer("max-connections-per-peer", in: 1...1_000_000) { settings.maximumConnectionsPerPeer = value }
        if let value = try file?.integer("max-files-per-peer", in: 1...100_000_000) { settings.maximumFilesPerPeer = value }
        if let value = try file?.integer("idle-timeout", in: 5...86400) { settings.idleTimeout = Int64(value) }
        if let value = try file?.integer("handshake-timeout", in: 1...300) { settings.handshakeTimeout = Int64(value) }
        if let value = try file?.integer("requests-per-second", in: 0...1_000_000) { settings.requestsPerSecond = value }
        if let value = try file?.integer("request-burst", in: 1...1_000_000) { settings.requestBurst = value }
        if let value = try file?.integer("file-watch-interval", in: 1...3600) { settings.fileWatchInterval = Int64(value) }
        if let value = try file?.integer("stop-timeout", in: 1...3600) { settings.stopTimeout = value }
        let metricsAddress = try (metrics ?? file?.string("metrics")).map { text in
            guard let address = TrackerAddress(text, allowingPortZero: true) else { throw ValidationError("metrics: '\(text)' is not ip:port") }
            return address
        }
        try ProgramSupport.bootstrapLogging(levelName: logLevel ?? file?.string("log-level"))
        // Before anything counts: without --metrics every counter stays a no-op.
        let metricsRegistry = metricsAddress.map { _ in Telemetry.bootstrap() }
        // Past a file-size limit a journal append fails (and is cut back) instead of killing the tracker.
        signal(SIGXFSZ, SIG_IGN)
        let logger = Logger(label: "tracker")
        let shared = try await openRegistry(file: file, settings: settings, logger: logger)
        let server = try TrackerServer(configuration: settings, logger: logger, registry: shared)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        // The metrics first: an address that is taken stops the tracker before it serves anyone.
        var endpoint: MetricsEndpoint?
        var metricsBound: SocketAddress?
        if let metricsRegistry, let metricsAddress {
            let metricsEndpoint = MetricsEndpoint(registry: metricsRegistry, beforeScrape: { server.recordMetrics() })
            metricsBound = try metricsEndpoint.start(host: metricsAddress.host, port: Int(metricsAddress.port), group: group)
            endpoint = metricsEndpoint
        }
        let bound = try server.start(group: group)
        var started = "tracker '\(settings.name)' listening on \(TrackerServer.format(bound)); registry \(server.registry.location)"
        if let metricsBound { started += "; metrics on http://\(TrackerServer.format(metricsBound))\(MetricsEndpoint.path)" }
        ProgramSupport.say(started)
        let reloading = ProgramSupport.onReload {
            do {
                try server.reload()
            } catch {
                logger.error("reload failed; the previous CA, CRL and ACL stay in force", metadata: ["error": "\(error)"])
            }
        }
        defer { withExtendedLifetime(reloading) {} }
        let service = TrackerService(server: server, stopTimeout: Double(settings.stopTimeout))
        let services = [ServiceGroupConfiguration.ServiceConfiguration(service: service, successTerminationBehavior: .gracefullyShutdownGroup)]
        try await ServiceGroup(configuration: ServiceGroupConfiguration(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)).run()
        endpoint?.stop()
        try await group.shutdownGracefully()
        ProgramSupport.say(service.cleanStop.withLockedValue { $0 } ? "tracker stopped" : "tracker stopped; some answers or journal writes were cut short (see the log)")
    }

    /// The shared registry named by --registry or the config file, or nil for seeders.txt.
    private func openRegistry(file: ConfigFile?, settings: TrackerConfiguration, logger: Logger) async throws -> PostgresRegistry? {
        guard let text = registry ?? file?.string("registry") else { return nil }
        let address: RegistryAddress
        do throws(RegistryAddressError) {
            address = try RegistryAddress(text)
        } catch {
            throw ValidationError("registry: \(error)")
        }
        var password = ProcessInfo.processInfo.environment["PGPASSWORD"]
        if let path = registryPasswordFile ?? file?.string("registry-password-file") {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw ValidationError("cannot read the registry password file \(path)")
            }
            password = text.trimmingCharacters(in: .newlines)
        }
        // A database that cannot be used stops the start with a RegistryStartError saying what to check.
        return try await PostgresRegistry.open(
            address, password: password, certificateAuthorityFile: registryCa ?? file?.string("registry-ca"), timeToLive: settings.timeToLive,
            maximumFilesPerPeer: settings.maximumFilesPerPeer, logger: logger
        )
    }
}

/// The tracker under the service group: it serves until SIGINT or SIGTERM starts a graceful
/// shutdown, then stops the server within its bound.
struct TrackerService: Service {
    let server: TrackerServer
    let stopTimeout: Double
    /// Whether the stop answered everything in flight and wrote the journal in time.
    let cleanStop = NIOLockedValueBox(false)

    func run() async throws {
        try? await gracefulShutdown()
        let clean = await server.shutDown(within: stopTimeout)
        cleanStop.withLockedValue { $0 = clean }
    }
}
