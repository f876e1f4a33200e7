import FileIO
import Foundation
import Logging
import MTorrentFormat
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PKI
import TLS
import Wire

/// Everything a peer needs to run; the `peer` command fills it from flags and a config file.
public struct PeerConfiguration: Sendable {
    public var host: String
    public var port: Int
    public var trackers: [TrackerAddress]
    public var pki: PKILayout
    public var name: String
    public var stateFolder: String
    public var tlsBackend: TLSBackend = .openssl
    /// Seconds between heartbeats to the trackers.
    public var heartbeatInterval: Int64 = 60
    public var limits = PeerLimits()

    /// The keys a peer configuration file may set (config/peer.conf.example documents each).
    public static let configFileKeys: Set<String> = [
        "pki", "name", "state", "tls-backend", "heartbeat", "log-level", "peers-per-download", "requests-per-peer", "upload-slots",
        "queued-requests", "upload-limit", "stall-timeout", "discovery-interval", "uploads-per-peer", "max-connections", "handshake-timeout",
        "idle-timeout",
    ]

    public init(host: String, port: Int, trackers: [TrackerAddress], pki: PKILayout, name: String, stateFolder: String) {
        self.host = host
        self.port = port
        self.trackers = trackers
        self.pki = pki
        self.name = name
        self.stateFolder = stateFolder
    }
}

/// A running peer: it serves its shares, talks to both trackers, and carries out the shell's
/// commands. Each command returns a one-line success message or a ``CommandFailure``.
public final class PeerNode: @unchecked Sendable {
    public let configuration: PeerConfiguration
    private let logger: Logger
    private let group: EventLoopGroup
    private let threadPool: NIOThreadPool
    private let trust: TrustSource
    private let identity: SigningIdentity
    private let index: ShareIndex
    private let partials = PartialShares()
    private var seeder: Seeder?
    /// The downloads running now, so that a new CRL reaches their connections.
    private let swarms = NIOLockedValueBox<[ObjectIdentifier: Swarm]>([:])
    private let peerTLS: TLSContext
    private let trackers: [TrackerClient]
    private var server: Channel?
    private var heartbeat: RepeatedTask?
    /// The port other peers reach this one on (known once started).
    public private(set) var servingPort: UInt16 = 0

    public init(configuration: PeerConfiguration, group: EventLoopGroup, threadPool: NIOThreadPool, logger: Logger) throws {
        self.configuration = configuration
        self.group = group
        self.threadPool = threadPool
        self.logger = logger
        trust = TrustSource(try TrustStore.load(from: configuration.pki))
        identity = try SigningIdentity.load(named: configuration.name, from: configuration.pki)
        _ = try trust.current.validate(identity.certificate, as: .peer)
        index = try ShareIndex(stateFolder: configuration.stateFolder)
        peerTLS = try configuration.tlsBackend.makeContext(TLSConfiguration(
            identity: identity, trust: trust, peerRole: .peer, handshakeTimeoutSeconds: configuration.limits.handshakeTimeout
        ))
        let trackerTLS = try configuration.tlsBackend.makeContext(TLSConfiguration(identity: identity, trust: trust, peerRole: .tracker))
        trackers = configuration.trackers.map { TrackerClient(address: $0, tls: trackerTLS, group: group) }
    }

    /// Starts serving, re-announces remembered shares and starts heartbeats.
    public func start() async throws {
        let seeder = Seeder(index: index, partials: partials, tls: peerTLS, trust: trust, threadPool: threadPool, limits: configuration.limits, logger: logger)
        self.seeder = seeder
        let server = try seeder.start(host: configuration.host, port: configuration.port, group: group)
        self.server = server
        servingPort = UInt16(server.localAddress?.port ?? 0)
        logger.info("serving", metadata: ["address": "\(configuration.host):\(servingPort)", "shares": "\(index.all.count)"])
        for entry in index.all {
            guard FileStamp(path: entry.dataPath)?.matches(entry) == true else {
                logger.warning("not re-announcing a share whose file changed or vanished", metadata: ["path": "\(entry.dataPath)"])
                continue
            }
            if let file = FileID(hex: entry.root) {
                _ = await askTrackers(.share(file: file, size: entry.size, port: servingPort, name: (entry.dataPath as NSString).lastPathComponent))
            }
        }
        let interval = TimeAmount.seconds(configuration.heartbeatInterval)
        let loop = group.next()
        heartbeat = loop.scheduleRepeatedAsyncTask(initialDelay: interval, delay: interval) { [self] _ in
            let promise = loop.makePromise(of: Void.self)
            promise.completeWithTask { _ = await self.askTrackers(.heartbeat(port: self.servingPort)) }
            return promise.futureResult
        }
    }

    /// `share <file> <mtorrent>`: sign a `.mtorrent`, announce it at the trackers, remember it.
    public func share(file path: String, mtorrent destination: String) async throws(CommandFailure) -> String {
        guard let stamp = FileStamp(path: path) else { throw CommandFailure(.fileNotFound, "\(path) is not a readable file") }
        guard !FileIO.exists(destination) else { throw CommandFailure(.alreadyExists, "\(destination) already exists") }
        let torrent: MTorrent
        do {
            torrent = try MTorrent.create(fileAt: path, trackers: configuration.trackers, identity: identity, trust: trust.current)
            try FileIO.createExclusive(destination, bytes: try torrent.serialized(), mode: 0o644)
        } catch let error as MTorrentError {
            throw CommandFailure(error.code == .badName ? .invalidArguments : .signatureInvalid, error.description)
        } catch {
            throw CommandFailure(.fileNotFound, "\(error)")
        }
        guard FileStamp(path: path) == stamp else { throw CommandFailure(.fileChanged, "\(path) changed while it was being shared; share it again") }
        let file = FileID(bytes: torrent.root)!
        let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
        do {
            try index.add(ShareEntry(
                root: torrent.rootHex, dataPath: absolute, mtorrentPath: URL(fileURLWithPath: destination).standardizedFileURL.path,
                size: stamp.size, pieceSize: torrent.layout.pieceSize, modifiedSeconds: stamp.seconds, modifiedNanoseconds: stamp.nanoseconds
            ))
        } catch {
            throw CommandFailure(.stateError, "cannot remember the share: \(error)")
        }
        let outcome = try await announce(.share(file: file, size: torrent.layout.fileSize, port: servingPort, name: torrent.name))
        return "shared \(torrent.name) (\(torrent.layout.fileSize) bytes, root \(torrent.rootHex.prefix(16))…) at \(outcome); wrote \(destination)"
    }

    /// `get <mtorrent> <save>`: verify, ask the trackers, download verified pieces from every
    /// holder at once while serving them, then seed. A `.part` left by an interrupted `get` is
    /// re-verified and resumed.
    public func get(mtorrent path: String, saveTo savePath: String, progress: (@Sendable (UInt64, UInt64) -> Void)?) async throws(CommandFailure) -> String {
        let torrent: MTorrent
        let signer: VerifiedIdentity
        do {
            (torrent, signer) = try MTorrent.load(from: path, trust: trust.current)
        } catch {
            if error.code == .unreadable { throw CommandFailure(.mtorrentFileNotFound, error.description) }
            throw CommandFailure(.signatureInvalid, "\(path) is refused before any network traffic: \(error.description)")
        }
        let part = try await openPart(savePath: savePath, torrent: torrent)
        let file = FileID(bytes: torrent.root)!
        var logger = self.logger
        logger[metadataKey: "file"] = "\(file)"
        if part.resumed.heldCount > 0 {
            logger.info("resuming: pieces of an earlier attempt verified again", metadata: ["pieces": "\(part.resumed.heldCount)/\(part.resumed.count)"])
        }
        let holders: [HolderRecord]
        do {
            holders = try await findHolders(of: file, name: torrent.name)
        } catch {
            if part.resumed.heldCount == 0 { part.abandon() }
            throw error
        }
        // Serve verified pieces at once: register as a holder before the first byte arrives.
        let share = PartialShare(file: file, partPath: part.partPath, layout: torrent.layout, held: part.resumed)
        partials.insert(share)
        _ = await askTrackers(.share(file: file, size: torrent.layout.fileSize, port: servingPort, name: torrent.name))
        let swarm = Swarm(
            torrent: torrent, part: part, share: share, tls: peerTLS, loop: group.next(), threadPool: threadPool, limits: configuration.limits,
            logger: logger, progress: progress, discover: { [self] in (try? await findHolders(of: file, name: torrent.name)) ?? [] }
        )
        swarms.withLockedValue { $0[ObjectIdentifier(swarm)] = swarm }
        let report: DownloadReport
        do {
            defer { _ = swarms.withLockedValue { $0.removeValue(forKey: ObjectIdentifier(swarm)) } }
            report = try await swarm.run(holders: holders)
            try part.finish()
        } catch {
            let kept = share.heldCount > 0
            if !kept {
                part.abandon()
                partials.remove(file)
            }
            throw kept ? CommandFailure(error.code, error.message + "; the verified pieces stay in \(part.partPath): run the same get again to resume") : error
        }
        let rate = report.seconds > 0 ? Double(report.fetchedBytes) / report.seconds / 1e6 : 0
        var summary = "downloaded \(torrent.name) to \(savePath): \(report.bytes) bytes, \(report.pieceCount) pieces verified against the signature of '\(signer.name)'"
        if report.resumedPieces > 0 { summary += "; \(report.resumedPieces) were already verified in the .part of an earlier attempt" }
        let sources = report.piecesByHolder.sorted { $0.value > $1.value }.map { "\($0.key) (\($0.value))" }
        summary += String(format: "; fetched %d pieces at %.1f MB/s from ", report.fetchedPieces, rate) + (sources.isEmpty ? "nobody" : sources.joined(separator: ", "))
        if !report.bannedPeers.isEmpty { summary += "; banned \(report.bannedPeers.joined(separator: ", ")) for corrupt pieces" }
        if let stamp = FileStamp(path: savePath) {
            try? index.add(ShareEntry(
                root: torrent.rootHex, dataPath: URL(fileURLWithPath: savePath).standardizedFileURL.path,
                mtorrentPath: URL(fileURLWithPath: path).standardizedFileURL.path, size: stamp.size, pieceSize: torrent.layout.pieceSize,
                modifiedSeconds: stamp.seconds, modifiedNanoseconds: stamp.nanoseconds
            ))
            summary += "; now seeding it"
        }
        partials.remove(file)
        return summary
    }

    /// Opens (or resumes) the `.part` file; re-verifying an earlier one reads it all, off the caller's thread.
    private func openPart(savePath: String, torrent: MTorrent) async throws(CommandFailure) -> PartFile {
        let result = try? await threadPool.runIfActive { () -> Result<PartFile, CommandFailure> in
            do throws(CommandFailure) {
                return .success(try PartFile(savePath: savePath, layout: torrent.layout, pieceHashes: torrent.pieceHashes))
            } catch {
                return .failure(error)
            }
        }
        guard let result else { throw CommandFailure(.downloadFailed, "the peer is shutting down") }
        return try result.get()
    }

    /// The holders both trackers list for `file`, without this peer.
    private func findHolders(of file: FileID, name: String) async throws(CommandFailure) -> [HolderRecord] {
        var holders: [HolderRecord] = []
        var reached = 0
        var denied: String?
        for tracker in trackers {
            switch try? await tracker.send(.get(file: file)) {
            case .holders(_, _, let records)?:
                reached += 1
                for record in records where !holders.contains(record) && record.fingerprint != ownFingerprint { holders.append(record) }
            case .failure(let code, let message)?:
                reached += 1
                if code == .accessDenied { denied = message }
            default:
                logger.warning("tracker unreachable", metadata: ["tracker": "\(tracker.address)"])
            }
        }
        guard reached > 0 else { throw CommandFailure(.trackersUnreachable, "neither tracker answered (\(trackers.map(\.address.description).joined(separator: ", ")))") }
        if holders.isEmpty, let denied { throw CommandFailure(.accessDenied, denied) }
        guard !holders.isEmpty else { throw CommandFailure(.noSeeders, "no online peer holds \(name)") }
        return holders
    }

    /// `status`: what this peer serves and how much it uploaded since it started.
    public func status() -> String {
        let uploaded = seeder?.uploaded ?? [:]
        let shares = index.all
        var text = "serving \(shares.count) file(s)"
        let lines = shares.compactMap { entry -> String? in
            guard let file = FileID(hex: entry.root) else { return nil }
            return "\((entry.dataPath as NSString).lastPathComponent) uploaded \(uploaded[file] ?? 0) bytes"
        }
        if !lines.isEmpty { text += ": " + lines.joined(separator: ", ") }
        let total = uploaded.values.reduce(0, +)
        return text + "; \(total) bytes uploaded in all"
    }

    /// `remove <mtorrent>`: withdraw at the trackers, stop serving, forget it. The data file stays.
    public func remove(mtorrent path: String) async throws(CommandFailure) -> String {
        let torrent: MTorrent
        do {
            (torrent, _) = try MTorrent.load(from: path, trust: trust.current)
        } catch {
            if error.code == .unreadable { throw CommandFailure(.mtorrentFileNotFound, error.description) }
            throw CommandFailure(.signatureInvalid, error.description)
        }
        let file = FileID(bytes: torrent.root)!
        let outcome = try await announce(.remove(file: file, port: servingPort))
        do {
            try index.remove(file)
        } catch {
            throw CommandFailure(.stateError, "cannot update the share index: \(error)")
        }
        _ = seeder?.stopServing(file)
        return "\(outcome); no longer serving \(torrent.name) (the data file is kept)"
    }

    /// Reloads the CA certificate and the CRL (the peer does this on SIGHUP): from then on every
    /// handshake, as server and as client, and every `.mtorrent` check uses them. Live uploads to,
    /// and downloads from, a certificate the new CRL revokes are closed.
    public func reload() throws {
        let newTrust = try TrustStore.load(from: configuration.pki)
        trust.replace(with: newTrust)
        let closed = seeder?.closeRevoked(by: newTrust) ?? 0
        for swarm in swarms.withLockedValue({ Array($0.values) }) { swarm.closeRevoked(by: newTrust) }
        logger.info("reloaded CA and CRL", metadata: ["crl": "\(newTrust.revocationList.number)", "closed": "\(closed)"])
    }

    /// Leaves the trackers and stops serving.
    public func stop() async {
        heartbeat?.cancel()
        _ = await askTrackers(.leave(port: servingPort))
        for tracker in trackers { tracker.close() }
        try? await server?.close()
    }

    private var ownFingerprint: String { (try? CertificateProfile.fingerprint(of: identity.certificate)) ?? "" }

    /// Sends a request to every tracker; succeeds if one accepted, saying which failed.
    private func announce(_ request: TrackerRequest) async throws(CommandFailure) -> String {
        let answers = await askTrackers(request)
        let accepted = answers.filter { if case .ok = $0.1 { return true } else { return false } }
        guard !accepted.isEmpty else {
            if let refusal = answers.lazy.compactMap({ answer -> CommandFailure? in
                if case .failure(let code, let message)? = answer.1 { return CommandFailure(code, message) }
                return nil
            }).first { throw refusal }
            throw CommandFailure(.trackersUnreachable, "neither tracker answered (\(trackers.map(\.address.description).joined(separator: ", ")))")
        }
        var text = "tracker " + accepted.map(\.0.description).joined(separator: " and ")
        let failed = answers.filter { if case .ok = $0.1 { return false } else { return true } }
        if !failed.isEmpty { text += " (not at \(failed.map(\.0.description).joined(separator: ", ")))" }
        return text
    }

    private func askTrackers(_ request: TrackerRequest) async -> [(TrackerAddress, TrackerResponse?)] {
        var answers: [(TrackerAddress, TrackerResponse?)] = []
        for tracker in trackers {
            do {
                let answer = try await tracker.send(request)
                answers.append((tracker.address, answer))
                if case .failure(let code, let message) = answer {
                    logger.warning("tracker refused", metadata: ["tracker": "\(tracker.address)", "code": "\(code)", "message": "\(message)"])
                }
            } catch {
                logger.warning("tracker unreachable", metadata: ["tracker": "\(tracker.address)", "error": "\(error)"])
                answers.append((tracker.address, nil))
            }
        }
        return answers
    }
}
