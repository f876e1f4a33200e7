import FileIO
import Foundation
import Logging
import NIOCore
import NIOPosix
import PKI
import NIOConcurrencyHelpers
import Telemetry
import TLS
import Wire
import X509

/// Everything a tracker needs to run; the `tracker` command fills it from flags and a config file.
public struct TrackerConfiguration: Sendable {
    public var host: String
    public var port: Int
    public var pki: PKILayout
    public var name: String
    public var aclPath: String?
    public var dataFolder: String
    /// Seconds a silent holder stays listed.
    public var timeToLive: TimeInterval = 300
    /// Seconds between sweeps that drop silent holders.
    public var expirySweepInterval: TimeInterval = 30
    public var maximumConnections = 1024
    /// Connections one certificate may hold at once.
    public var maximumConnectionsPerPeer = 16
    /// Files one certificate may hold in the registry.
    public var maximumFilesPerPeer = 10_000
    /// Seconds a connection may stay without a request.
    public var idleTimeout: Int64 = 600
    public var handshakeTimeout: Int64 = TLSConfiguration.defaultHandshakeTimeoutSeconds
    public var tlsBackend: TLSBackend = .openssl
    /// Requests a second one certificate may send, sustained; 0 means no limit.
    public var requestsPerSecond = 100
    /// Requests one certificate may send at once, above the sustained rate.
    public var requestBurst = 1000
    /// Seconds between looks at the CA certificate, CRL, ACL and the tracker's own certificate and
    /// key: a changed file is loaded as on SIGHUP.
    public var fileWatchInterval: Int64 = 2
    /// Seconds a graceful stop may take: answering what is in flight and writing the journal.
    public var stopTimeout = 10

    /// The keys a tracker configuration file may set (config/tracker.conf.example documents each).
    public static let configFileKeys: Set<String> = [
        "pki", "name", "acl", "data", "ttl", "max-connections", "max-connections-per-peer", "max-files-per-peer", "idle-timeout", "handshake-timeout",
        "tls-backend", "log-level", "requests-per-second", "request-burst", "file-watch-interval", "stop-timeout", "metrics",
        "registry", "registry-password-file", "registry-ca",
    ]

    public init(host: String, port: Int, pki: PKILayout, name: String, aclPath: String?, dataFolder: String) {
        self.host = host
        self.port = port
        self.pki = pki
        self.name = name
        self.aclPath = aclPath
        self.dataFolder = dataFolder
    }
}

/// The tracker: a mutual-TLS server that answers the tracker protocol from a durable registry,
/// under an access control list, and logs every decision with the caller's identity.
public final class TrackerServer: Sendable {
    public let configuration: TrackerConfiguration
    public let registry: any RegistryStore
    private let logger: Logger
    private let trust: TrustSource
    private let proofs: ProofCheck
    private let tlsContext: RenewableTLSContext
    /// The certificate this tracker presents now (renewed in place by ``reload()``).
    private let ownCertificate: NIOLockedValueBox<Certificate>
    /// Holders left out of answers because the CRL in force revokes them.
    private let revokedHolders = RevokedHolders()
    /// The files ``reload()`` reads, looked at every ``TrackerConfiguration/fileWatchInterval``.
    private let watchedFiles: NIOLockedValueBox<FileChangeWatch>
    private let acl: NIOLockedValueBox<AccessControlList>
    private let connections = NIOLockedValueBox<[ObjectIdentifier: (channel: Channel, identity: VerifiedIdentity)]>([:])
    private let channel = NIOLockedValueBox<Channel?>(nil)
    /// Every connection open now, authenticated or still in its handshake.
    private let openChannels = NIOLockedValueBox<[ObjectIdentifier: Channel]>([:])
    /// Requests each certificate may still send (nil without a limit).
    private let requestBudgets: CertificateBudgets?
    /// Log lines each certificate may still cause: a flood of requests cannot flood the log.
    private let logBudgets = CertificateBudgets(burst: 20, perSecond: 2)

    /// A tracker over `registry`, or over the embedded ``Registry`` in the data folder without one.
    public init(configuration: TrackerConfiguration, logger: Logger, registry store: (any RegistryStore)? = nil) throws {
        self.configuration = configuration
        self.logger = logger
        trust = TrustSource(try TrustStore.load(from: configuration.pki))
        proofs = ProofCheck(trust: trust)
        let identity = try SigningIdentity.load(named: configuration.name, from: configuration.pki)
        _ = try trust.current.validate(identity.certificate, as: .tracker)
        var tls = TLSConfiguration(identity: identity, trust: trust, peerRole: .peer)
        tls.handshakeTimeoutSeconds = configuration.handshakeTimeout
        tlsContext = try RenewableTLSContext(backend: configuration.tlsBackend, configuration: tls)
        ownCertificate = NIOLockedValueBox(identity.certificate)
        watchedFiles = NIOLockedValueBox(FileChangeWatch(paths: Self.filesToWatch(configuration)))
        acl = NIOLockedValueBox(try Self.loadACL(configuration.aclPath))
        registry = try store ?? Registry(
            folder: configuration.dataFolder, timeToLive: configuration.timeToLive, maximumFilesPerPeer: configuration.maximumFilesPerPeer, logger: logger
        )
        requestBudgets = configuration.requestsPerSecond > 0
            ? CertificateBudgets(burst: max(configuration.requestBurst, 1), perSecond: configuration.requestsPerSecond) : nil
    }

    private static func filesToWatch(_ configuration: TrackerConfiguration) -> [String] {
        let pki = configuration.pki
        return [pki.authorityCertificate, pki.revocationList, pki.certificate(named: configuration.name), pki.privateKey(named: configuration.name)]
            + (configuration.aclPath.map { [$0] } ?? [])
    }

    private static func loadACL(_ path: String?) throws -> AccessControlList {
        guard let path else { return .withoutFile }
        return try AccessControlList.load(from: path)
    }

    /// Binds and starts serving; returns the bound address (port 0 picks a free one).
    public func start(group: EventLoopGroup) throws -> SocketAddress {
        let bound = try ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 256)
            .childChannelInitializer { [self] child in
                child.eventLoop.makeCompletedFuture {
                    try self.setUp(child)
                }
            }
            .bind(host: configuration.host, port: configuration.port).wait()
        channel.withLockedValue { $0 = bound }
        scheduleExpiry(on: bound.eventLoop)
        scheduleUpkeep(on: bound.eventLoop)
        warnAboutExpiry()
        let listening: Logger.Metadata = [
            "address": "\(bound.localAddress.map(Self.format) ?? "?")", "acl": "\(acl.withLockedValue { $0.source })", "registry": "\(registry.location)",
        ]
        Task { [registry, logger] in
            let counts = try? await registry.counts
            logger.info("tracker listening", metadata: listening.merging([
                "files": "\(counts.map { "\($0.files)" } ?? "?")", "holders": "\(counts.map { "\($0.holders)" } ?? "?")",
            ]) { $1 })
        }
        if configuration.aclPath == nil {
            logger.notice("no ACL file: every peer with a valid certificate may share, get and remove its own entries")
        }
        return bound.localAddress!
    }

    /// Connections open now, authenticated or still in their handshake.
    public var openConnections: Int { openChannels.withLockedValue { $0.count } }

    /// Sets the gauges that are read when the metrics are scraped: connections, and the registry's
    /// files, holders and journal size.
    public func recordMetrics() {
        GaugeMetric.trackerConnectionsOpen.set(Double(openConnections))
        // A shared registry is counted in its database, not by each replica at every scrape.
        guard let embedded = registry as? Registry else { return }
        let counts = embedded.counts
        GaugeMetric.trackerRegistryFiles.set(Double(counts.files))
        GaugeMetric.trackerRegistryHolders.set(Double(counts.holders))
        if let bytes = try? FileManager.default.attributesOfItem(atPath: embedded.path)[.size] as? Int {
            GaugeMetric.trackerJournalBytes.set(Double(bytes))
        }
    }

    /// Stops accepting and closes every connection at once.
    public func stop() {
        channel.withLockedValue { $0 }?.close(promise: nil)
        for channel in openChannels.withLockedValue({ $0.values }) { channel.close(promise: nil) }
    }

    /// Stops gracefully: takes no more connections or requests, answers the requests already read
    /// (a change once its journal line is durable), closes each connection after its last answer,
    /// and writes what the registry has queued. Whatever is still open after `seconds` is closed;
    /// false if anything had to be cut short.
    public func shutDown(within seconds: Double) async -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int64(seconds * 1000))
        try? await channel.withLockedValue { $0 }?.close()
        let open = openChannels.withLockedValue { Array($0.values) }
        logger.info("stopping: answering the requests in flight", metadata: ["connections": "\(open.count)"])
        for channel in open { channel.pipeline.fireUserInboundEventTriggered(TrackerSession.Drain()) }
        let drained = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                for channel in open { try? await channel.closeFuture.get() }
                return true
            }
            group.addTask {
                try? await Task.sleep(until: deadline)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        if !drained {
            logger.warning("stopping: closing connections whose answers did not finish in time")
            stop()
        }
        // The journal gets what is left of the bound, and a second at least.
        let remaining = max(1, Double((deadline - ContinuousClock.now).components.seconds))
        let written = await Task.detached { [registry] in await registry.close(within: remaining) }.value
        if !written { logger.error("stopping: the registry's last writes did not finish in time", metadata: ["registry": "\(registry.location)"]) }
        return drained && written
    }

    /// Reloads the CA certificate, the CRL, the ACL and the tracker's own certificate and key (the
    /// tracker does this on SIGHUP and when one of those files changes), all or nothing: a file
    /// that does not load leaves everything as it was. Connections of certificates the new CRL
    /// revokes are closed and their holder entries leave the answers; connections open before a
    /// renewal keep the old certificate, new ones get the new.
    public func reload() throws {
        let newTrust = try TrustStore.load(from: configuration.pki)
        let newACL = try Self.loadACL(configuration.aclPath)
        let identity = try SigningIdentity.load(named: configuration.name, from: configuration.pki)
        _ = try newTrust.validate(identity.certificate, as: .tracker)
        let renewed = identity.certificate != ownCertificate.withLockedValue { $0 }
        if renewed { try tlsContext.replaceIdentity(with: identity) }
        ownCertificate.withLockedValue { $0 = identity.certificate }
        trust.replace(with: newTrust)
        acl.withLockedValue { $0 = newACL }
        let revokedHolders = revokedHolders.update(for: newTrust)
        var closed = 0
        for (_, connection) in connections.withLockedValue({ $0 }) where newTrust.revokes(connection.identity) {
            logger.warning("closing connection of a revoked certificate", metadata: ["peer": "\(connection.identity.name)"])
            connection.channel.close(promise: nil)
            closed += 1
        }
        logger.info("reloaded CA, CRL, ACL and own certificate", metadata: [
            "crl": "\(newTrust.revocationList.number)", "acl": "\(newACL.source)", "closed": "\(closed)",
            "revoked-holders": "\(revokedHolders)", "certificate": renewed ? "renewed, serial \(Hex.encode(identity.certificate.serialNumber.bytes))" : "unchanged",
        ])
        warnAboutExpiry()
    }

    /// Logs a warning if this tracker's certificate or the CRL it holds expires soon.
    private func warnAboutExpiry() {
        let warnings = ExpiryNotice.warnings(
            certificate: ownCertificate.withLockedValue { $0 }, name: configuration.name,
            revocationList: trust.current.revocationList, now: Date()
        )
        for warning in warnings { logger.warning("\(warning)") }
    }

    /// Looks at the watched files every few seconds and reloads when one changed; warns about
    /// expiry every few hours.
    private func scheduleUpkeep(on eventLoop: EventLoop) {
        let interval = TimeAmount.seconds(configuration.fileWatchInterval)
        eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { [self] _ in
            guard watchedFiles.withLockedValue({ $0.changed() }) else { return }
            do {
                try reload()
            } catch {
                logger.error("a changed file did not load; the previous CA, CRL, ACL and certificate stay in force", metadata: ["error": "\(error)"])
            }
        }
        eventLoop.scheduleRepeatedTask(initialDelay: Self.expiryWarningInterval, delay: Self.expiryWarningInterval) { [self] _ in
            warnAboutExpiry()
        }
    }

    /// How often the expiry warnings are repeated.
    private static let expiryWarningInterval = TimeAmount.hours(6)

    /// The answer to `CRL n`: the list in force if it is newer than number `n`.
    fileprivate func revocationList(newerThan known: Int) -> TrackerResponse {
        let list = trust.current.revocationList
        guard list.number > known else { return .ok("revocation list \(list.number) is the newest here") }
        guard list.derEncoded.count <= TrackerResponse.maximumRevocationListBytes else {
            return .failure(code: .trackerError, message: "the revocation list is larger than \(TrackerResponse.maximumRevocationListBytes) bytes and is not handed out")
        }
        return .revocationList(list.derEncoded)
    }

    private func setUp(_ child: Channel) throws {
        let admitted = openChannels.withLockedValue { open -> Bool in
            guard open.count < configuration.maximumConnections else { return false }
            open[ObjectIdentifier(child)] = child
            return true
        }
        guard admitted else {
            CounterMetric.trackerConnectionsRefused.increment("connection-limit")
            logger.warning("refusing a connection: the connection limit is reached", metadata: ["limit": "\(configuration.maximumConnections)"])
            child.close(promise: nil)
            return
        }
        child.closeFuture.whenComplete { [self] _ in
            openChannels.withLockedValue { $0[ObjectIdentifier(child)] = nil }
            connections.withLockedValue { $0[ObjectIdentifier(child)] = nil }
        }
        let session = TrackerSession(server: self, remote: child.remoteAddress)
        try child.pipeline.syncOperations.addHandlers([
            TLSHandler(context: tlsContext, side: .server),
            IdleStateHandler(readTimeout: .seconds(configuration.idleTimeout)),
            ByteToMessageHandler(LineFrameDecoder(maximumLength: TrackerRequest.maximumLineLength)),
            session,
        ])
    }

    /// Records an authenticated connection; false if its certificate already holds as many as allowed.
    fileprivate func register(_ channel: Channel, identity: VerifiedIdentity) -> Bool {
        connections.withLockedValue { connections in
            let held = connections.values.count { $0.identity.fingerprint == identity.fingerprint }
            guard held < configuration.maximumConnectionsPerPeer else { return false }
            connections[ObjectIdentifier(channel)] = (channel, identity)
            revokedHolders.learn(identity)
            return true
        }
    }

    /// Logs a line about a connection, at most ``logBudgets`` lines a second per certificate; the
    /// first line after some were held back says how many.
    fileprivate func log(_ level: Logger.Level, _ message: Logger.Message, identity: VerifiedIdentity?, _ metadata: @autoclosure () -> Logger.Metadata = [:]) {
        guard logger.logLevel <= level else { return }
        var all = metadata()
        if let identity {
            guard let heldBack = logBudgets.take(identity.fingerprint) else { return }
            all["peer"] = "\(identity.name)"
            all["fingerprint"] = "\(identity.fingerprint.prefix(16))"
            if heldBack > 0 { all["unlogged"] = "\(heldBack)" }
        }
        logger.log(level: level, message, metadata: all)
    }

    /// Whether `identity` may send one more request now.
    fileprivate func withinRequestRate(_ identity: VerifiedIdentity) -> Bool {
        guard let requestBudgets else { return true }
        return requestBudgets.take(identity.fingerprint) != nil
    }

    /// Answers one request from an authenticated peer at `address` (its connection's host and the
    /// port it serves on). A change is answered once its journal line is durable; a GET at once.
    fileprivate func answer(_ request: TrackerRequest, identity: VerifiedIdentity, host: String, on eventLoop: EventLoop) -> EventLoopFuture<TrackerResponse> {
        // The revocation list is for every certificate that can connect, whatever the ACL says.
        if case .revocationList(let known) = request {
            log(.debug, "asked for the revocation list", identity: identity, ["holds": "\(known)"])
            return eventLoop.makeSucceededFuture(revocationList(newerThan: known))
        }
        let action: AccessControlList.Action
        switch request {
        case .revocationList: preconditionFailure("answered above")
        case .share, .heartbeat, .leave: action = .share
        case .get: action = .get
        case .remove: action = .remove
        case .allow: action = .admin
        }
        let rules = acl.withLockedValue { $0 }
        let decision = rules.decide(action, for: identity)
        log(decision.allowed ? .debug : .warning, decision.allowed ? "allowed" : "denied", identity: identity, [
            "request": "\(request.line.prefix(100))", "rule": "\(decision.reason)",
        ])
        guard decision.allowed else {
            CounterMetric.trackerACLDenials.increment(action.rawValue)
            return eventLoop.makeSucceededFuture(.failure(code: .accessDenied, message: "'\(identity.name)' may not \(action.rawValue) here"))
        }
        switch request {
        case .get(let file):
            let excluded = revokedHolders.fingerprints
            return eventLoop.makeFutureWithTask { [self] in
                await unlessUnavailable(identity: identity) { try await registry.holders(of: file, excluding: excluded, now: Date()) }
            }
        case .heartbeat(let port):
            return eventLoop.makeFutureWithTask { [self] in
                await unlessUnavailable(identity: identity) {
                    Self.response(try await registry.heartbeat(address: Self.address(host, port), identity: identity, now: Date()))
                }
            }
        case .share, .remove, .allow, .leave, .revocationList:
            let isAdmin = rules.decide(.admin, for: identity).allowed
            let promise = eventLoop.makePromise(of: TrackerResponse.self)
            // Off the event loop: checking a share's signed header costs a signature and a chain check.
            promise.completeWithTask { [self] in
                do {
                    let outcome = try await change(request, identity: identity, host: host, isAdmin: isAdmin)
                    if case .refused(.quota, _) = outcome {
                        CounterMetric.trackerQuotaRefusals.increment("files")
                        log(.warning, "refused: the certificate's quota is used up", identity: identity, ["request": "\(request.line.prefix(100))"])
                    }
                    return Self.response(outcome)
                } catch let error as RegistryUnavailable {
                    return unavailable(error, identity: identity)
                } catch {
                    log(.error, "cannot record a change", identity: identity, ["error": "\(error)"])
                    return .failure(code: .trackerError, message: "the tracker could not record this change; try again or use the other tracker")
                }
            }
            return promise.futureResult
        }
    }

    /// The answer `read` gives, or `ERR UNAVAILABLE` while the registry cannot be reached.
    private func unlessUnavailable(identity: VerifiedIdentity, _ read: () async throws -> TrackerResponse) async -> TrackerResponse {
        do {
            return try await read()
        } catch let error as RegistryUnavailable {
            return unavailable(error, identity: identity)
        } catch {
            log(.error, "cannot read the registry", identity: identity, ["error": "\(error)"])
            return .failure(code: .trackerError, message: "the tracker could not read its registry; try again or use the other tracker")
        }
    }

    private func unavailable(_ error: RegistryUnavailable, identity: VerifiedIdentity) -> TrackerResponse {
        log(.warning, "the registry is unavailable", identity: identity, ["error": "\(error)"])
        return .failure(code: .unavailable, message: "the tracker's registry cannot be reached now; nothing was recorded: try again shortly or use another tracker")
    }

    /// Makes a change; a share is recorded only once its signed header verifies.
    private func change(_ request: TrackerRequest, identity: VerifiedIdentity, host: String, isAdmin: Bool) async throws -> RegistryOutcome {
        switch request {
        case .share(let file, let port, let proof):
            let claim: ProvenClaim
            do throws(ProofRefusal) {
                claim = try proofs.check(proof, of: file)
            } catch {
                log(.warning, "refused a share without a valid proof", identity: identity, ["file": "\(file.short)", "reason": "\(error.message)"])
                return .refused(code: .proofInvalid, message: error.message)
            }
            return try await registry.share(
                file: file, size: claim.size, name: claim.name, signer: claim.signer, address: Self.address(host, port), identity: identity, now: Date()
            )
        case .remove(let file, let port):
            return try await registry.remove(file: file, address: Self.address(host, port), identity: identity, isAdmin: isAdmin, now: Date())
        case .allow(let file):
            return try await registry.allow(file: file, now: Date())
        case .leave(let port):
            return try await registry.leave(address: Self.address(host, port), identity: identity, now: Date())
        case .get, .heartbeat, .revocationList:
            preconditionFailure("\(request.line) changes nothing")
        }
    }

    private static func response(_ outcome: RegistryOutcome) -> TrackerResponse {
        switch outcome {
        case .done(let message): return .ok(message)
        case .refused(let code, let message): return .failure(code: code, message: message)
        }
    }

    private func scheduleExpiry(on eventLoop: EventLoop) {
        let interval = TimeAmount.milliseconds(Int64(configuration.expirySweepInterval * 1000))
        eventLoop.scheduleRepeatedAsyncTask(initialDelay: interval, delay: interval) { [self] _ in
            // One sweep at a time: the next is scheduled once this one is done.
            eventLoop.makeFutureWithTask { [registry, logger] in
                do {
                    let dropped = try await registry.expire(now: Date())
                    if dropped > 0 { logger.info("dropped silent holders", metadata: ["count": "\(dropped)"]) }
                } catch {
                    logger.warning("cannot drop silent holders now; the next sweep tries again", metadata: ["error": "\(error)"])
                }
            }
        }
    }

    static func address(_ host: String, _ port: UInt16) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// `host:port` of a socket address, with brackets around an IPv6 host.
    public static func format(_ address: SocketAddress) -> String {
        address.ipAddress.map { self.address($0, UInt16(address.port ?? 0)) } ?? "\(address)"
    }
}

/// One peer's connection to the tracker: waits for the verified identity, then answers each line.
final class TrackerSession: ChannelInboundHandler {
    typealias InboundIn = String
    typealias OutboundOut = ByteBuffer

    private let server: TrackerServer
    private let host: String
    private var identity: VerifiedIdentity?
    private var badRequests = 0
    /// Requests read whose answers are not sent yet, and the last of those answers.
    private var answering = 0
    private var lastAnswer: EventLoopFuture<Void>?
    private var reading = true
    /// The tracker is stopping: no more requests are read, and the connection closes after its last answer.
    private var draining = false
    /// Requests one connection may have waiting for their answers before it is no longer read from.
    static let maximumAnswering = 64
    /// Malformed requests tolerated on one connection before it is closed.
    static let maximumBadRequests = 10

    /// Sent through every connection when the tracker stops gracefully.
    struct Drain {}

    init(server: TrackerServer, remote: SocketAddress?) {
        self.server = server
        self.host = remote?.ipAddress ?? "unknown"
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSEvent.handshakeCompleted(let identity)? = event as? TLSEvent {
            guard server.register(context.channel, identity: identity) else {
                CounterMetric.trackerConnectionsRefused.increment("certificate-connection-limit")
                server.log(.warning, "refusing a connection: this certificate holds too many", identity: identity, [
                    "host": "\(host)", "limit": "\(server.configuration.maximumConnectionsPerPeer)",
                ])
                context.close(promise: nil)
                return
            }
            self.identity = identity
            server.log(.debug, "peer connected", identity: identity, ["host": "\(host)"])
        } else if event is Drain {
            draining = true
            adjustReading(context: context)
            if identity == nil || answering == 0 { context.close(promise: nil) }
        } else if event is IdleStateHandler.IdleStateEvent {
            server.log(.info, "closing an idle connection", identity: identity)
            context.close(promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let line = unwrapInboundIn(data)
        guard let identity, !draining else { return }
        let response: EventLoopFuture<TrackerResponse>
        let operation: String
        do {
            let request = try TrackerRequest(line: line)
            operation = request.operation
            if server.withinRequestRate(identity) {
                response = server.answer(request, identity: identity, host: host, on: context.eventLoop)
            } else {
                CounterMetric.trackerQuotaRefusals.increment("request-rate")
                server.log(.warning, "over the request rate", identity: identity, ["limit": "\(server.configuration.requestsPerSecond)/s"])
                response = context.eventLoop.makeSucceededFuture(
                    .failure(code: .quota, message: "more than \(server.configuration.requestsPerSecond) requests a second from this certificate; slow down")
                )
            }
        } catch {
            operation = "invalid"
            badRequests += 1
            server.log(.warning, "bad request", identity: identity, ["error": "\(error)"])
            response = context.eventLoop.makeSucceededFuture(.failure(code: .invalidArguments, message: error.description))
        }
        let closeAfter = badRequests >= Self.maximumBadRequests
        answering += 1
        // Answers go out in the order of the requests, whenever each is ready.
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        lastAnswer = (lastAnswer ?? context.eventLoop.makeSucceededVoidFuture()).and(response).map { _, response in
            let (session, context) = bound.value
            CounterMetric.trackerRequests.increment(operation, response.outcome)
            session.send(response, context: context, closeAfter: closeAfter)
        }
        adjustReading(context: context)
    }

    private func send(_ response: TrackerResponse, context: ChannelHandlerContext, closeAfter: Bool) {
        answering -= 1
        let text = response.lines.map { $0 + "\n" }.joined()
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: text)), promise: nil)
        if closeAfter || (draining && answering == 0) { context.close(promise: nil) }
        adjustReading(context: context)
    }

    /// Reads requests only while the client reads its answers and has few waiting for the journal.
    private func adjustReading(context: ChannelHandlerContext) {
        let wanted = !draining && context.channel.isWritable && answering < Self.maximumAnswering
        guard wanted != reading else { return }
        reading = wanted
        context.channel.setOption(ChannelOptions.autoRead, value: wanted).whenFailure { _ in }
        if wanted { context.read() }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        adjustReading(context: context)
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let tls = error as? TLSError {
            server.log(tls.code == .uncleanShutdown ? .debug : .warning, "TLS: \(tls.reason)", identity: identity, ["host": "\(host)"])
        } else {
            server.log(.warning, "closing connection: \(error)", identity: identity, ["host": "\(host)"])
        }
        context.close(promise: nil)
    }
}

extension TrackerRequest {
    /// The request's kind, as the requests metric labels it.
    fileprivate var operation: String {
        switch self {
        case .share: "share"
        case .get: "get"
        case .remove: "remove"
        case .allow: "allow"
        case .heartbeat: "heartbeat"
        case .leave: "leave"
        case .revocationList: "crl"
        }
    }
}

extension TrackerResponse {
    /// `ok`, or the failure code, as the requests metric labels an answer.
    fileprivate var outcome: String {
        if case .failure(let code, _) = self { code.rawValue } else { "ok" }
    }
}
