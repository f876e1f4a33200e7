import FileIO
import Foundation
import Logging
import MTorrentFormat
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PKI
import Telemetry
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
    /// Seconds one request to a tracker may take in all: connect, handshake and answer.
    public var trackerTimeout: Int64 = TrackerClient.defaultTimeoutSeconds
    /// Seconds between asking the trackers for a newer revocation list.
    public var revocationPollInterval: Int64 = 5
    /// Seconds between looks at the CA certificate, the CRL and this peer's certificate and key: a
    /// changed file is loaded as on SIGHUP.
    public var fileWatchInterval: Int64 = 2
    public var limits = PeerLimits()

    /// The keys a peer configuration file may set (config/peer.conf.example documents each).
    public static let configFileKeys: Set<String> = [
        "pki", "name", "state", "tls-backend", "heartbeat", "tracker-timeout", "log-level", "peers-per-download", "requests-per-peer", "upload-slots",
        "queued-requests", "upload-limit", "stall-timeout", "discovery-interval", "uploads-per-peer", "max-connections", "handshake-timeout",
        "idle-timeout", "crl-poll-interval", "file-watch-interval", "super-seed-window", "super-seed-copies", "stop-timeout", "keep-seeding", "trackers", "json", "metrics",
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
/// commands. Each command returns a one-line success message or a ``CommandFailure``, and is
/// all-or-nothing: a command that failed leaves nothing behind. The trackers are asked at once,
/// each with a deadline, so no command waits longer than that on a tracker that does not answer.
public final class PeerNode: @unchecked Sendable {
    public let configuration: PeerConfiguration
    private let logger: Logger
    private let group: EventLoopGroup
    private let threadPool: NIOThreadPool
    private let trust: TrustSource
    /// The certificate and key this peer signs `.mtorrent` files with and presents (renewed in place by ``reload()``).
    private let identity: NIOLockedValueBox<SigningIdentity>
    /// This peer's certificate fingerprints, the renewed ones too: trackers list this peer as
    /// well, and it is not asked.
    private let ownFingerprints: NIOLockedValueBox<Set<String>>
    /// The files ``reload()`` reads, looked at every ``PeerConfiguration/fileWatchInterval``.
    private let watchedFiles: NIOLockedValueBox<FileChangeWatch>
    /// When the expiry warnings are next repeated.
    private let nextExpiryWarning: NIOLockedValueBox<NIODeadline>
    /// Whether the trackers are being asked for a newer revocation list now (one round at a time).
    private let polling = NIOLockedValueBox(false)
    private let index: ShareIndex
    private let partials = PartialShares()
    private var seeder: Seeder?
    /// The downloads running now, so that a new CRL reaches their connections.
    private let swarms = NIOLockedValueBox<[ObjectIdentifier: Swarm]>([:])
    private let peerTLS: RenewableTLSContext
    private let trackerTLS: RenewableTLSContext
    private let trackers: [TrackerClient]
    private var server: Channel?
    private let schedule: NIOLockedValueBox<AnnounceSchedule>
    /// Withdrawals a tracker missed while unreachable, sent when it answers again.
    private let missedRemovals: NIOLockedValueBox<[Int: Set<FileID>]>
    private var upkeep: [RepeatedTask] = []
    /// The port other peers reach this one on (known once started).
    public private(set) var servingPort: UInt16 = 0

    public init(configuration: PeerConfiguration, group: EventLoopGroup, threadPool: NIOThreadPool, logger: Logger) throws {
        self.configuration = configuration
        self.group = group
        self.threadPool = threadPool
        self.logger = logger
        trust = TrustSource(try TrustStore.load(from: configuration.pki))
        let identity = try SigningIdentity.load(named: configuration.name, from: configuration.pki)
        self.identity = NIOLockedValueBox(identity)
        ownFingerprints = NIOLockedValueBox([try CertificateProfile.fingerprint(of: identity.certificate)])
        _ = try trust.current.validate(identity.certificate, as: .peer)
        index = try ShareIndex(stateFolder: configuration.stateFolder)
        peerTLS = try RenewableTLSContext(backend: configuration.tlsBackend, configuration: TLSConfiguration(
            identity: identity, trust: trust, peerRole: .peer, handshakeTimeoutSeconds: configuration.limits.handshakeTimeout
        ))
        let trackerTLS = try RenewableTLSContext(backend: configuration.tlsBackend, configuration: TLSConfiguration(
            identity: identity, trust: trust, peerRole: .tracker, handshakeTimeoutSeconds: configuration.trackerTimeout
        ))
        self.trackerTLS = trackerTLS
        let pki = configuration.pki
        watchedFiles = NIOLockedValueBox(FileChangeWatch(paths: [
            pki.authorityCertificate, pki.revocationList, pki.certificate(named: configuration.name), pki.privateKey(named: configuration.name),
        ]))
        nextExpiryWarning = NIOLockedValueBox(.now() + Self.expiryWarningInterval)
        trackers = configuration.trackers.map { TrackerClient(address: $0, tls: trackerTLS, group: group, timeoutSeconds: configuration.trackerTimeout) }
        schedule = NIOLockedValueBox(AnnounceSchedule(trackers: trackers.count, heartbeatInterval: .seconds(configuration.heartbeatInterval), now: .now()))
        missedRemovals = NIOLockedValueBox([:])
    }

    /// Starts serving, announces remembered shares to every tracker (each within its deadline) and
    /// keeps the trackers up to date from then on: heartbeats, and a full announcement to a
    /// tracker that comes back after it failed.
    public func start() async throws {
        let seeder = Seeder(index: index, partials: partials, tls: peerTLS, trust: trust, threadPool: threadPool, limits: configuration.limits, logger: logger)
        self.seeder = seeder
        let server: Channel
        do {
            server = try seeder.start(host: configuration.host, port: configuration.port, group: group)
        } catch let error as IOError where error.errnoCode == EADDRINUSE {
            throw CommandFailure(.addressInUse, "\(configuration.host):\(configuration.port) is already in use by another program; choose another port (0 picks a free one)")
        } catch let error as IOError where error.errnoCode == EADDRNOTAVAIL {
            throw CommandFailure(.invalidArguments, "\(configuration.host) is not an address of this machine; give one of its own addresses")
        } catch let error as IOError where error.errnoCode == EACCES {
            throw CommandFailure(.permissionDenied, "this user may not listen on port \(configuration.port); choose a port above 1023")
        } catch let error as IOError {
            throw CommandFailure(.invalidArguments, "cannot listen on \(configuration.host):\(configuration.port): \(String(cString: strerror(error.errnoCode)))")
        }
        self.server = server
        servingPort = UInt16(server.localAddress?.port ?? 0)
        logger.info("serving", metadata: ["address": "\(configuration.host):\(servingPort)", "shares": "\(index.all.count)"])
        for entry in index.all where FileStamp(path: entry.dataPath)?.matches(entry) != true {
            logger.warning("not announcing a share whose file changed or vanished", metadata: ["path": "\(entry.dataPath)"])
        }
        // The first announcement may take many requests; start-up waits for it one deadline at most.
        let firstRound = Task { await keepTrackersUpToDate() }
        await withTaskGroup(of: Void.self) { race in
            race.addTask { await firstRound.value }
            race.addTask { [timeout = configuration.trackerTimeout] in try? await Task.sleep(for: .seconds(timeout)) }
            await race.next()
            race.cancelAll()
        }
        warnAboutExpiry()
        let loop = group.next()
        upkeep = [
            loop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { [self] _ in
                Task { await keepTrackersUpToDate() }
            },
            loop.scheduleRepeatedTask(initialDelay: .zero, delay: .seconds(configuration.revocationPollInterval)) { [self] _ in
                guard polling.withLockedValue({ busy in defer { busy = true }; return !busy }) else { return }
                Task {
                    await pollRevocationLists()
                    polling.withLockedValue { $0 = false }
                }
            },
            loop.scheduleRepeatedTask(initialDelay: .seconds(configuration.fileWatchInterval), delay: .seconds(configuration.fileWatchInterval)) { [self] _ in
                keepTrustUpToDate()
            },
        ]
    }

    /// Picks up changed PKI files, and repeats the expiry warnings when that is due.
    private func keepTrustUpToDate() {
        if watchedFiles.withLockedValue({ $0.changed() }) {
            do {
                try reload()
            } catch {
                logger.error("a changed PKI file did not load; the previous CA, CRL and certificate stay in force: \(error)")
            }
        }
        let now = NIODeadline.now()
        let warn = nextExpiryWarning.withLockedValue { next in
            guard next <= now else { return false }
            next = now + Self.expiryWarningInterval
            return true
        }
        if warn { warnAboutExpiry() }
    }

    /// How often the expiry warnings are repeated.
    private static let expiryWarningInterval = TimeAmount.hours(6)

    /// Logs a warning if this peer's certificate or the CRL it holds expires soon.
    private func warnAboutExpiry() {
        let warnings = ExpiryNotice.warnings(
            certificate: identity.withLockedValue { $0.certificate }, name: configuration.name,
            revocationList: trust.current.revocationList, now: Date()
        )
        for warning in warnings { logger.warning("\(warning)") }
    }

    /// Asks every tracker at once for a revocation list newer than the one in force and adopts
    /// each that our CA signed, is current and is newer still (see ``adopt(_:from:)``).
    private func pollRevocationLists() async {
        let known = trust.current.revocationList.number
        await withTaskGroup(of: Void.self) { group in
            for index in trackers.indices {
                group.addTask { [self] in
                    let tracker = trackers[index]
                    do throws(TrackerUnreachable) {
                        switch try await tracker.send(.revocationList(newerThan: known)) {
                        case .revocationList(let der): adopt(der, from: tracker.address)
                        case .failure(let code, let message):
                            logger.debug("tracker gave no revocation list", metadata: ["tracker": "\(tracker.address)", "code": "\(code)", "message": "\(message)"])
                        case .ok, .holders: break
                        }
                    } catch {
                        logger.debug("tracker not reached for the revocation list", metadata: ["tracker": "\(tracker.address)", "error": "\(error)"])
                        schedule.withLockedValue { $0.trackerFailed(index, now: .now()) }
                    }
                }
            }
        }
    }

    /// Judges a revocation list a tracker handed over; a good one is stored in the PKI folder
    /// (atomically) and put in force at once, cutting live transfers of what it revokes. A list
    /// our CA did not sign, that is not current, or that is not newer changes nothing.
    private func adopt(_ der: [UInt8], from tracker: TrackerAddress) {
        adopting.withLockedValue { _ in
            let current = trust.current
            let newTrust: TrustStore
            do {
                // Two trackers may hand over the same new list at once; only the first is news.
                guard der != current.revocationList.derEncoded else { return }
                newTrust = try current.adopting(try RevocationList(derEncoded: der))
            } catch {
                logger.warning("refused a revocation list from a tracker; nothing changed", metadata: ["tracker": "\(tracker)", "reason": "\(error)"])
                return
            }
            do {
                try FileIO.replaceAtomically(configuration.pki.revocationList, bytes: Array(newTrust.revocationList.pemEncoded.utf8), mode: 0o644)
            } catch {
                logger.error("could not store a new revocation list; it is in force until the peer stops", metadata: ["error": "\(error)"])
            }
            let closed = apply(newTrust)
            logger.notice("adopted a newer revocation list from a tracker", metadata: [
                "tracker": "\(tracker)", "crl": "\(newTrust.revocationList.number)", "previous": "\(current.revocationList.number)",
                "revoked": "\(newTrust.revocationList.entries.count)", "closed": "\(closed)",
            ])
        }
    }

    /// Serialises adopting revocation lists: two trackers may hand over the same one at once.
    private let adopting = NIOLockedValueBox(())

    /// Runs what the announce schedule says is due now, every tracker at once.
    private func keepTrackersUpToDate() async {
        let due = schedule.withLockedValue { $0.due(now: .now()) }
        await withTaskGroup(of: Void.self) { group in
            for action in due {
                group.addTask { [self] in
                    let succeeded: Bool
                    switch action {
                    case .heartbeat(let index): succeeded = await send(.heartbeat(port: servingPort), to: index) != nil
                    case .announceAll(let index): succeeded = await announceAll(to: index)
                    }
                    schedule.withLockedValue { $0.finished(action, succeeded: succeeded, now: .now()) }
                }
            }
        }
    }

    /// Tells one tracker every withdrawal it missed and every file this peer serves; false as
    /// soon as the tracker does not answer (the schedule tries again later).
    private func announceAll(to tracker: Int) async -> Bool {
        for file in missedRemovals.withLockedValue({ $0[tracker] ?? [] }) {
            guard await send(.remove(file: file, port: servingPort), to: tracker) != nil else { return false }
            missedRemovals.withLockedValue { _ = $0[tracker]?.remove(file) }
        }
        var requests: [TrackerRequest] = []
        for entry in index.all where FileStamp(path: entry.dataPath)?.matches(entry) == true {
            guard let file = FileID(hex: entry.root), let proof = signedHeader(of: entry) else { continue }
            requests.append(.share(file: file, port: servingPort, proof: proof))
        }
        for share in partials.all {
            guard let proof = share.proof else { continue }
            requests.append(.share(file: share.file, port: servingPort, proof: proof))
        }
        for request in requests {
            guard await sendPaced(request, to: tracker) else { return false }
        }
        if !requests.isEmpty { logger.info("announced every share", metadata: ["tracker": "\(trackers[tracker].address)", "shares": "\(requests.count)"]) }
        return true
    }

    /// The signed header a share is announced with: kept in the share index, or read once from
    /// its `.mtorrent` for an entry remembered before shares carried proof. Nil (and a log line)
    /// for a version 1 `.mtorrent`, which has none.
    private func signedHeader(of entry: ShareEntry) -> [UInt8]? {
        if let kept = entry.signedHeader { return Array(kept) }
        guard let header = (try? MTorrent.load(from: entry.mtorrentPath, trust: trust.current))?.0.signedHeader else {
            logger.warning("not announcing a share without a version 2 .mtorrent; share the file again", metadata: ["path": "\(entry.mtorrentPath)"])
            return nil
        }
        var updated = entry
        updated.signedHeader = Data(header.bytes)
        try? index.add(updated)
        return header.bytes
    }

    /// Runs blocking work, such as hashing a whole file, on a thread of its own: the peer's tasks
    /// (signal handling among them) keep their threads meanwhile, and so does the thread pool,
    /// whose two threads verify and write the pieces of running downloads.
    static func onThreadOfItsOwn<Value: Sendable>(_ work: @escaping @Sendable () throws -> Value) async throws -> Value {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try work() }) }.start()
        }
    }

    /// `share <file> <mtorrent>`: sign a `.mtorrent`, announce it at the trackers, remember it.
    /// All or nothing: unless a tracker accepts it, no `.mtorrent` is left, nothing is remembered
    /// and nothing is served, so the same command can simply be tried again.
    public func share(file path: String, mtorrent destination: String) async throws(CommandFailure) -> CommandAnswer {
        guard let stamp = FileStamp(path: path) else { throw CommandFailure(.fileNotFound, "\(path) is not a readable file") }
        guard !FileIO.exists(destination) else { throw CommandFailure(.alreadyExists, "\(destination) already exists") }
        let torrent: MTorrent
        do {
            let (trackers, signer, trustNow) = (configuration.trackers, identity.withLockedValue { $0 }, trust.current)
            torrent = try await Self.onThreadOfItsOwn { try MTorrent.create(fileAt: path, trackers: trackers, identity: signer, trust: trustNow) }
        } catch let error as MTorrentError {
            throw CommandFailure(error.code == .badName ? .invalidArguments : .signatureInvalid, error.description)
        } catch {
            throw CommandFailure(.fileNotFound, "\(path) cannot be read: \(error)")
        }
        guard FileStamp(path: path) == stamp else { throw CommandFailure(.fileChanged, "\(path) changed while it was being shared; share it again") }
        guard let header = torrent.signedHeader else { throw CommandFailure(.signatureInvalid, "the new .mtorrent has no signed header") }
        do {
            try FileIO.createExclusive(destination, bytes: try torrent.serialized(), mode: 0o644)
        } catch {
            throw CommandFailure(FileIO.exists(destination) ? .alreadyExists : .invalidArguments, "cannot write \(destination): \(error)")
        }
        let file = FileID(bytes: torrent.root)!
        let earlier = index.entry(for: file)
        do {
            try index.add(ShareEntry(
                root: torrent.rootHex, dataPath: URL(fileURLWithPath: path).standardizedFileURL.path,
                mtorrentPath: URL(fileURLWithPath: destination).standardizedFileURL.path,
                size: stamp.size, pieceSize: torrent.layout.pieceSize, modifiedSeconds: stamp.seconds, modifiedNanoseconds: stamp.nanoseconds,
                signedHeader: Data(header.bytes)
            ))
        } catch {
            unlink(destination)
            throw CommandFailure(.stateError, "cannot remember the share in \(index.path): \(error)")
        }
        let answers = await askTrackers(.share(file: file, port: servingPort, proof: header.bytes))
        guard !answers.accepted.isEmpty else {
            if let earlier { try? index.add(earlier) } else { try? index.remove(file) }
            unlink(destination)
            let failure = answers.failure
            throw CommandFailure(failure.code, failure.message + "; nothing was shared and \(destination) was not kept")
        }
        return CommandAnswer(
            "shared \(torrent.name) (\(torrent.layout.fileSize) bytes, root \(torrent.rootHex.prefix(16))…) at \(Self.summary(of: answers)); wrote \(destination)",
            fields: [
                "name": .text(torrent.name), "bytes": .count(torrent.layout.fileSize), "root": .text(torrent.rootHex), "mtorrent": .text(destination),
                "trackers": Self.trackerFields(of: answers),
            ]
        )
    }

    /// `get <mtorrent> <save>`: verify, ask the trackers, download verified pieces from every
    /// holder at once while serving them, then seed. A `.part` left by an interrupted `get` is
    /// re-verified and resumed. A save location that is a folder receives the file under the
    /// `.mtorrent`'s name (``SaveLocation`` says how the folder is opened).
    public func get(mtorrent path: String, saveTo location: String, progress: (@Sendable (UInt64, UInt64) -> Void)?) async throws(CommandFailure) -> CommandAnswer {
        let torrent: MTorrent
        let signer: VerifiedIdentity
        do {
            (torrent, signer) = try MTorrent.load(from: path, trust: trust.current)
        } catch {
            if error.code == .unreadable { throw CommandFailure(.mtorrentFileNotFound, error.description) }
            throw CommandFailure(.signatureInvalid, "\(path) is refused before any network traffic: \(error.description)")
        }
        let part = try await openPart(location: location, torrent: torrent)
        let file = FileID(bytes: torrent.root)!
        var logger = self.logger
        logger[metadataKey: "file"] = "\(file.label(torrent.name))"
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
        let proof = torrent.signedHeader?.bytes
        let share = PartialShare(file: file, partPath: part.partPath, layout: torrent.layout, proof: proof, held: part.resumed)
        partials.insert(share)
        if let proof {
            _ = await askTrackers(.share(file: file, port: servingPort, proof: proof))
        } else {
            logger.notice("a version 1 .mtorrent carries no signed header: this peer serves the file but is not announced to the trackers")
        }
        let swarm = Swarm(
            name: torrent.name, torrent: torrent, part: part, share: share, tls: peerTLS, loop: group.next(), threadPool: threadPool, limits: configuration.limits,
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
        var summary = "downloaded \(torrent.name) to \(part.savePath): \(report.bytes) bytes, \(report.pieceCount) pieces verified against the signature of '\(signer.name)'"
        if report.resumedPieces > 0 { summary += "; \(report.resumedPieces) were already verified in the .part of an earlier attempt" }
        let sources = report.piecesByHolder.sorted { $0.value > $1.value }.map { "\($0.key) (\($0.value))" }
        summary += String(format: "; fetched %d pieces at %.1f MB/s from ", report.fetchedPieces, rate) + (sources.isEmpty ? "nobody" : sources.joined(separator: ", "))
        if !report.bannedPeers.isEmpty { summary += "; banned \(report.bannedPeers.joined(separator: ", ")) for corrupt pieces" }
        let seeding = FileStamp(path: part.savePath)
        if let stamp = seeding {
            try? index.add(ShareEntry(
                root: torrent.rootHex, dataPath: URL(fileURLWithPath: part.savePath).standardizedFileURL.path,
                mtorrentPath: URL(fileURLWithPath: path).standardizedFileURL.path, size: stamp.size, pieceSize: torrent.layout.pieceSize,
                modifiedSeconds: stamp.seconds, modifiedNanoseconds: stamp.nanoseconds, signedHeader: proof.map { Data($0) }
            ))
            summary += "; now seeding it"
        }
        partials.remove(file)
        return CommandAnswer(summary, fields: [
            "name": .text(torrent.name), "saved_to": .text(part.savePath), "root": .text(torrent.rootHex), "bytes": .count(report.bytes),
            "pieces": .count(report.pieceCount), "fetched_pieces": .count(report.fetchedPieces), "resumed_pieces": .count(report.resumedPieces),
            "seconds": .number(report.seconds), "rate_mb_s": .number(rate), "signer": .text(signer.name),
            "holders": .object(report.piecesByHolder.mapValues { .count($0) }), "banned": .list(report.bannedPeers.map { .text($0) }),
            "seeding": .bool(seeding != nil),
        ])
    }

    /// One field per tracker: its address and what it answered.
    private static func trackerFields(of answers: TrackerAnswers) -> AnswerValue {
        .list(zip(answers.answers, answers.outcomes).map { answer, outcome in
            let accepted: Bool
            if case .success(.ok) = answer.result { accepted = true } else { accepted = false }
            return .object(["address": .text("\(answer.tracker)"), "accepted": .bool(accepted), "answer": .text(outcome)])
        })
    }

    /// Opens (or resumes) the `.part` file; re-verifying an earlier one reads it all, off the caller's thread.
    private func openPart(location: String, torrent: MTorrent) async throws(CommandFailure) -> PartFile {
        let result = try? await threadPool.runIfActive { () -> Result<PartFile, CommandFailure> in
            do throws(CommandFailure) {
                return .success(try PartFile(location: location, defaultName: torrent.name, layout: torrent.layout, pieceHashes: torrent.pieceHashes))
            } catch {
                return .failure(error)
            }
        }
        guard let result else { throw CommandFailure(.downloadFailed, "the peer is shutting down") }
        return try result.get()
    }

    /// The holders the trackers list for `file`, without this peer.
    private func findHolders(of file: FileID, name: String) async throws(CommandFailure) -> [HolderRecord] {
        let answers = await askTrackers(.get(file: file))
        var holders: [HolderRecord] = []
        for answer in answers.answers {
            guard case .success(.holders(_, _, let records)) = answer.result else { continue }
            let own = ownFingerprints.withLockedValue { $0 }
            for record in records where !holders.contains(record) && !own.contains(record.fingerprint) { holders.append(record) }
        }
        guard holders.isEmpty else { return holders }
        guard answers.problems.count < answers.answers.count else { throw answers.failure }
        if let denied = answers.refusals.first(where: { $0.code == .accessDenied }) { throw CommandFailure(.accessDenied, denied.message) }
        let silent = answers.problems.map(\.description)
        throw CommandFailure(.noSeeders, "no online peer holds \(name)" + (silent.isEmpty ? "" : " (\(silent.joined(separator: "; ")))"))
    }

    /// `status`: what this peer serves and how much it uploaded since it started, the downloads
    /// running (with their rate and holders), and whether each tracker holds all of its shares.
    public func status() async -> CommandAnswer {
        let uploaded = seeder?.uploaded ?? [:]
        let shares = index.all
        var text = "serving \(shares.count) file(s)"
        var shareFields: [AnswerValue] = []
        let lines = shares.compactMap { entry -> String? in
            guard let file = FileID(hex: entry.root) else { return nil }
            let name = (entry.dataPath as NSString).lastPathComponent
            shareFields.append(.object([
                "name": .text(name), "path": .text(entry.dataPath), "root": .text(entry.root), "uploaded": .count(uploaded[file] ?? 0),
            ]))
            return "\(name) uploaded \(uploaded[file] ?? 0) bytes"
        }
        if !lines.isEmpty { text += ": " + lines.joined(separator: ", ") }
        let total = uploaded.values.reduce(0, +)
        var downloads: [DownloadProgress] = []
        for swarm in swarms.withLockedValue({ Array($0.values) }) { downloads.append(await swarm.progress()) }
        downloads.sort { $0.name < $1.name }
        if !downloads.isEmpty {
            text += "; downloading " + downloads.map { download in
                String(format: "%@ %.0f%% at %.1f MB/s from %d holder(s)", download.name, download.fraction * 100, download.bytesPerSecond / 1e6, download.connectedHolders)
            }.joined(separator: ", ")
        }
        let trackerStates = schedule.withLockedValue { schedule in trackers.indices.map { (trackers[$0].address, schedule.isUpToDate($0)) } }
        text += "; \(total) bytes uploaded in all; trackers: " + trackerStates.map { "\($0.0) \($0.1 ? "up to date" : "not reached yet")" }.joined(separator: ", ")
        return CommandAnswer(text, fields: [
            "shares": .list(shareFields), "uploaded": .count(total),
            "downloads": .list(downloads.map { download in
                .object([
                    "name": .text(download.name), "root": .text("\(download.file)"), "bytes": .count(download.totalBytes),
                    "verified_bytes": .count(download.verifiedBytes), "rate_mb_s": .number(download.bytesPerSecond / 1e6),
                    "holders": .count(download.connectedHolders),
                ])
            }),
            "trackers": .list(trackerStates.map { .object(["address": .text("\($0.0)"), "reachable": .bool($0.1)]) }),
        ])
    }

    /// Sets the gauges that are read when the metrics are scraped: downloads running, trackers
    /// reached, and the revocation list and certificate in force.
    public func recordMetrics(now: Date = Date()) {
        GaugeMetric.peerDownloadsInProgress.set(Double(swarms.withLockedValue { $0.count }))
        let reachable = schedule.withLockedValue { schedule in trackers.indices.count { schedule.isUpToDate($0) } }
        GaugeMetric.peerTrackersReachable.set(Double(reachable))
        let list = trust.current.revocationList
        GaugeMetric.peerCRLNumber.set(Double(list.number))
        GaugeMetric.peerCRLExpirySeconds.set(list.nextUpdate.timeIntervalSince(now).rounded(.down))
        let expiry = identity.withLockedValue { $0.certificate.notValidAfter }
        GaugeMetric.peerCertificateExpirySeconds.set(expiry.timeIntervalSince(now).rounded(.down))
    }

    /// `remove <mtorrent>`: stop serving at once, forget it, and withdraw it at the trackers. It
    /// takes effect here whatever the trackers answer; a tracker that could not be reached is
    /// told when it answers again. The data file stays.
    public func remove(mtorrent path: String) async throws(CommandFailure) -> CommandAnswer {
        let torrent = try loadVerified(path)
        let file = FileID(bytes: torrent.root)!
        let served = index.entry(for: file) != nil
        if served {
            do {
                try index.remove(file)
            } catch {
                throw CommandFailure(.stateError, "cannot update the share index \(index.path): \(error)")
            }
            _ = seeder?.stopServing(file)
        }
        let answers = await askTrackers(.remove(file: file, port: servingPort))
        if served {
            missedRemovals.withLockedValue { missed in
                for (position, answer) in answers.answers.enumerated() {
                    if case .failure = answer.result { missed[position, default: []].insert(file) }
                }
            }
        }
        let trackersSaid = answers.outcomes.joined(separator: "; ")
        guard served || !answers.accepted.isEmpty else {
            let failure = answers.failure
            throw CommandFailure(failure.code, "this peer does not serve \(torrent.name); " + failure.message)
        }
        return CommandAnswer(
            (served ? "no longer serving \(torrent.name) (the data file is kept); " : "") + trackersSaid,
            fields: ["name": .text(torrent.name), "root": .text(torrent.rootHex), "was_served": .bool(served), "trackers": Self.trackerFields(of: answers)]
        )
    }

    /// `allow <mtorrent>`: an admin lets a withdrawn file be shared again, at every tracker.
    public func allow(mtorrent path: String) async throws(CommandFailure) -> CommandAnswer {
        let torrent = try loadVerified(path)
        let answers = await askTrackers(.allow(file: FileID(bytes: torrent.root)!))
        guard !answers.accepted.isEmpty else { throw answers.failure }
        return CommandAnswer(
            "\(torrent.name) may be shared again at \(Self.summary(of: answers))",
            fields: ["name": .text(torrent.name), "root": .text(torrent.rootHex), "trackers": Self.trackerFields(of: answers)]
        )
    }

    /// Reads and verifies a `.mtorrent` named at the shell; nothing goes out unless it verifies.
    private func loadVerified(_ path: String) throws(CommandFailure) -> MTorrent {
        do {
            return try MTorrent.load(from: path, trust: trust.current).0
        } catch {
            if error.code == .unreadable { throw CommandFailure(.mtorrentFileNotFound, error.description) }
            throw CommandFailure(.signatureInvalid, error.description)
        }
    }

    /// Reloads the CA certificate, the CRL and this peer's certificate and key (the peer does this
    /// on SIGHUP and when one of those files changes), all or nothing: from then on every
    /// handshake, as server and as client, and every `.mtorrent` check uses them. Live uploads to,
    /// and downloads from, a certificate the new CRL revokes are closed. A renewed certificate is
    /// presented on every new connection, and every share is announced again under it (trackers
    /// list holders by certificate).
    public func reload() throws {
        let newTrust = try TrustStore.load(from: configuration.pki)
        let newIdentity = try SigningIdentity.load(named: configuration.name, from: configuration.pki)
        _ = try newTrust.validate(newIdentity.certificate, as: .peer)
        let renewed = newIdentity.certificate != identity.withLockedValue { $0.certificate }
        let current = trust.current
        // Storing a CRL a tracker handed over changes crl.pem too; that reload would change nothing.
        guard renewed || newTrust.authority != current.authority || newTrust.revocationList.derEncoded != current.revocationList.derEncoded else {
            logger.debug("reloaded the PKI files; nothing changed")
            return
        }
        if renewed {
            let fingerprint = try CertificateProfile.fingerprint(of: newIdentity.certificate)
            try peerTLS.replaceIdentity(with: newIdentity)
            try trackerTLS.replaceIdentity(with: newIdentity)
            identity.withLockedValue { $0 = newIdentity }
            ownFingerprints.withLockedValue { _ = $0.insert(fingerprint) }
            for tracker in trackers { tracker.close() }
            schedule.withLockedValue { $0.announceEverywhere(now: .now()) }
        }
        let closed = apply(newTrust)
        logger.info("reloaded CA, CRL and own certificate", metadata: [
            "crl": "\(newTrust.revocationList.number)", "closed": "\(closed)",
            "certificate": renewed ? "renewed, serial \(Hex.encode(newIdentity.certificate.serialNumber.bytes))" : "unchanged",
        ])
        warnAboutExpiry()
    }

    /// Puts `newTrust` in force and closes live transfers with certificates it revokes; returns
    /// how many uploads it closed.
    private func apply(_ newTrust: TrustStore) -> Int {
        trust.replace(with: newTrust)
        let closed = seeder?.closeRevoked(by: newTrust) ?? 0
        for swarm in swarms.withLockedValue({ Array($0.values) }) { swarm.closeRevoked(by: newTrust) }
        return closed
    }

    /// Ends every running download at once (the peer is stopping); each keeps its verified pieces
    /// in its `.part` for the same `get` to resume.
    public func abortDownloads() {
        for swarm in swarms.withLockedValue({ Array($0.values) }) {
            swarm.abort(CommandFailure(.downloadFailed, "the peer is stopping (SIGINT or SIGTERM)"))
        }
    }

    /// Leaves the trackers (each within its deadline) and stops serving.
    public func stop() async {
        for task in upkeep { task.cancel() }
        _ = await askTrackers(.leave(port: servingPort))
        for tracker in trackers { tracker.close() }
        try? await server?.close()
    }


    /// Which trackers took a request, and what the others said.
    private static func summary(of answers: TrackerAnswers) -> String {
        var text = "tracker " + answers.accepted.map(\.description).joined(separator: " and ")
        let others = answers.answers.filter { answer in
            if case .success(.ok) = answer.result { false } else { true }
        }
        if !others.isEmpty {
            text += " (not at the others: " + TrackerAnswers(answers: others).outcomes.joined(separator: "; ") + ")"
        }
        return text
    }

    /// Sends a request to every tracker at once and collects every answer, each within its deadline.
    private func askTrackers(_ request: TrackerRequest) async -> TrackerAnswers {
        let results = await withTaskGroup(of: (Int, Result<TrackerResponse, TrackerUnreachable>).self) { group in
            for index in trackers.indices {
                group.addTask { [self] in
                    // Assigned, then returned: a tuple returned from inside the typed `do` came
                    // out with a garbage index from optimised builds.
                    let result: Result<TrackerResponse, TrackerUnreachable>
                    do throws(TrackerUnreachable) {
                        result = .success(try await trackers[index].send(request))
                    } catch {
                        result = .failure(error)
                    }
                    return (index, result)
                }
            }
            var results: [Int: Result<TrackerResponse, TrackerUnreachable>] = [:]
            for await (index, result) in group { results[index] = result }
            return results
        }
        let answers = TrackerAnswers(answers: trackers.indices.map { TrackerAnswers.Answer(tracker: trackers[$0].address, result: results[$0]!) })
        for (index, answer) in answers.answers.enumerated() { note(answer.result, from: index) }
        return answers
    }

    /// Sends a request to one tracker, waiting and sending it again while the tracker answers that
    /// this peer is over its request rate (a bounded number of times); false if it gave no answer.
    private func sendPaced(_ request: TrackerRequest, to index: Int) async -> Bool {
        for _ in 0..<Self.quotaRetries {
            guard let answer = await send(request, to: index) else { return false }
            guard case .failure(.quota, _) = answer else { return true }
            try? await Task.sleep(for: .seconds(1))
        }
        return false
    }

    /// How often an announcement is tried again after a tracker said QUOTA.
    private static let quotaRetries = 30

    /// Sends a request to one tracker; nil if it gave no answer.
    private func send(_ request: TrackerRequest, to index: Int) async -> TrackerResponse? {
        let result: Result<TrackerResponse, TrackerUnreachable>
        do throws(TrackerUnreachable) {
            result = .success(try await trackers[index].send(request))
        } catch {
            result = .failure(error)
        }
        note(result, from: index)
        return try? result.get()
    }

    /// Logs a refusal or a silent tracker; a silent one is announced everything again later.
    private func note(_ result: Result<TrackerResponse, TrackerUnreachable>, from index: Int) {
        switch result {
        case .success(.failure(let code, let message)):
            logger.warning("tracker refused", metadata: ["tracker": "\(trackers[index].address)", "code": "\(code)", "message": "\(message)"])
        case .failure(let problem):
            logger.warning("tracker unreachable", metadata: ["tracker": "\(trackers[index].address)", "error": "\(problem)"])
            schedule.withLockedValue { $0.trackerFailed(index, now: .now()) }
        case .success:
            break
        }
    }
}
