import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import PKI
import PostgresNIO
import Tracker
import Wire

/// The registry in PostgreSQL, shared by any number of stateless tracker replicas, with the
/// semantics of the embedded ``Registry``: per-signer claims, one holder per certificate per file,
/// at most ``maximumFilesPerPeer`` files per certificate, withdraw and allow, and expiry.
///
/// Every change is one transaction, answered only once it commits: a replica killed at any moment
/// loses nothing it answered. Changes to a file lock its row (`SELECT … FOR UPDATE`), and a share
/// first takes a transaction lock on its certificate, so the quota holds across replicas.
/// Expiry runs under `pg_try_advisory_xact_lock`: one replica sweeps at a time, and each silent
/// holder is dropped by one sweep only. Times are the replicas' clocks (`now`), as in the embedded
/// registry, so replicas must keep their clocks in step (NTP); a skew only shifts the time to live.
///
/// While the database cannot be reached every operation throws ``RegistryUnavailable`` within
/// its deadline; the connection pool reconnects on its own, with backoff.
public final class PostgresRegistry: RegistryStore {
    public let address: RegistryAddress
    /// Holders silent for longer than this are dropped, and files nobody holds for as long are forgotten.
    public let timeToLive: TimeInterval
    /// Most files one certificate may hold.
    public let maximumFilesPerPeer: Int
    private let client: PostgresClient
    private let running: Task<Void, Never>
    private let logger: Logger
    private let timers: any EventLoop

    /// How long one operation may take before it is answered as unavailable.
    public let deadline: TimeAmount
    /// Connections this replica keeps to PostgreSQL at most.
    public static let maximumConnections = 16
    /// The class of the advisory locks: expiry (0) and migration (1).
    static let lockClass: Int32 = 0x4D54
    /// The class of the per-certificate share locks.
    static let certificateLockClass: Int32 = 0x4D55

    public var location: String { address.description }

    private init(address: RegistryAddress, client: PostgresClient, timeToLive: TimeInterval, maximumFilesPerPeer: Int, deadline: TimeAmount, logger: Logger) {
        self.address = address
        self.deadline = deadline
        self.client = client
        self.timeToLive = timeToLive
        self.maximumFilesPerPeer = maximumFilesPerPeer
        self.logger = logger
        timers = MultiThreadedEventLoopGroup.singleton.any()
        running = Task { await client.run() }
    }

    /// Connects to the registry at `address`, creating or migrating its schema; throws
    /// ``RegistryStartError`` (which says what to check) when the database cannot be used. An
    /// operation not done within `deadline` is answered as unavailable.
    public static func open(
        _ address: RegistryAddress, password: String?, certificateAuthorityFile: String? = nil, timeToLive: TimeInterval,
        maximumFilesPerPeer: Int = 10_000, deadline: TimeAmount = .seconds(5), logger: Logger = Logger(label: "registry")
    ) async throws -> PostgresRegistry {
        var configuration = PostgresClient.Configuration(
            host: address.host, port: address.port, username: address.user, password: password, database: address.database,
            tls: try tls(address.tlsMode, certificateAuthorityFile: certificateAuthorityFile)
        )
        configuration.options.maximumConnections = maximumConnections
        configuration.options.minimumConnections = 1
        configuration.options.connectTimeout = .seconds(5)
        let client = PostgresClient(configuration: configuration, eventLoopGroup: MultiThreadedEventLoopGroup.singleton, backgroundLogger: logger)
        let registry = PostgresRegistry(
            address: address, client: client, timeToLive: timeToLive, maximumFilesPerPeer: maximumFilesPerPeer, deadline: deadline, logger: logger
        )
        do {
            try await registry.transaction { connection, logger in try await Schema.migrate(connection, logger: logger) }
        } catch let error as RegistryUnavailable {
            await registry.close()
            throw RegistryStartError(address: address, problem: error.reason, hint: true)
        } catch {
            await registry.close()
            throw RegistryStartError(
                address: address, problem: "cannot use the registry database at \(address): \(registry.describe(error))", hint: !(error is SchemaError)
            )
        }
        return registry
    }

    /// Closes every connection; the registry answers nothing afterwards.
    public func close() async {
        running.cancel()
        await running.value
    }

    /// Closes every connection, waiting at most `seconds` for them to end; false if they had not.
    public func close(within seconds: Double) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await self.close()
                return true
            }
            group.addTask {
                try? await Task.sleep(for: .milliseconds(Int64(seconds * 1000)))
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
    }

    deinit {
        running.cancel()
    }

    private static func tls(_ mode: RegistryAddress.TLSMode, certificateAuthorityFile: String?) throws -> PostgresClient.Configuration.TLS {
        guard mode != .disable else { return .disable }
        var tls = NIOSSL.TLSConfiguration.makeClientConfiguration()
        if let certificateAuthorityFile {
            guard FileManager.default.isReadableFile(atPath: certificateAuthorityFile) else {
                throw RegistryStartError.unreadableCertificateAuthority(certificateAuthorityFile)
            }
            tls.trustRoots = .file(certificateAuthorityFile)
        }
        switch mode {
        case .disable: preconditionFailure("handled above")
        case .require: tls.certificateVerification = certificateAuthorityFile == nil ? .none : .noHostnameVerification
        case .verifyCA: tls.certificateVerification = .noHostnameVerification
        case .verifyFull: tls.certificateVerification = .fullVerification
        }
        return .require(tls)
    }

    // MARK: RegistryStore

    public var counts: (files: Int, holders: Int) {
        get async throws {
            let row = try await read("SELECT (SELECT count(*) FROM files), (SELECT count(*) FROM holders)").first
            guard let (files, holders) = try row?.decode((Int, Int).self) else { return (0, 0) }
            return (files, holders)
        }
    }

    public func share(
        file: FileID, size: UInt64, name: String, signer: VerifiedIdentity, address: String, identity: VerifiedIdentity, now: Date
    ) async throws -> RegistryOutcome {
        let maximum = maximumFilesPerPeer
        return try await change { connection, logger in
            let root = file.description
            let holder = identity.fingerprint
            try await connection.rows("""
                INSERT INTO files (root) SELECT \(root) FROM (SELECT pg_advisory_xact_lock(\(Self.certificateLockClass), hashtext(\(holder)))) AS certificate
                ON CONFLICT (root) DO NOTHING
                """, logger)
            let found = try await connection.rows("""
                SELECT f.withdrawn, c.size, c.name, c.signer_fingerprint, c.withdrawn,
                       EXISTS (SELECT 1 FROM holders WHERE root = f.root AND fingerprint = \(holder)),
                       (SELECT count(*) FROM holders WHERE fingerprint = \(holder))
                FROM files f LEFT JOIN claims c ON c.root = f.root AND c.signer = \(signer.name)
                WHERE f.root = \(root) FOR UPDATE OF f
                """, logger).first
            guard let found else { throw StoreError.vanished(file) }
            let (fileWithdrawn, claimSize, claimName, claimFingerprint, claimWithdrawn, holds, held) =
                try found.decode((Bool, Int64?, String?, String?, Bool?, Bool, Int).self)
            if fileWithdrawn {
                throw Refusal(code: .withdrawn, message: "\(file) was withdrawn from the network; an admin must allow it again")
            }
            if claimWithdrawn == true {
                throw Refusal(
                    code: .withdrawn,
                    message: "\(file) as signed by '\(signer.name)' was withdrawn; its signer shares it again with a new .mtorrent only after an admin allows it"
                )
            }
            if !holds, held >= maximum {
                throw Refusal(code: .quota, message: "this certificate holds \(maximum) files already, the most this tracker allows; remove some first")
            }
            let storedSize = Int64(bitPattern: size)
            if claimSize != storedSize || claimName != name || claimFingerprint != signer.fingerprint {
                try await connection.rows("""
                    INSERT INTO claims (root, signer, signer_fingerprint, size, name) VALUES (\(root), \(signer.name), \(signer.fingerprint), \(storedSize), \(name))
                    ON CONFLICT (root, signer) DO UPDATE
                    SET signer_fingerprint = EXCLUDED.signer_fingerprint, size = EXCLUDED.size, name = EXCLUDED.name, withdrawn = false
                    """, logger)
            }
            try await connection.rows("""
                WITH held AS (
                    INSERT INTO holders (root, fingerprint, peer_name, address, signer, last_seen)
                    VALUES (\(root), \(holder), \(identity.name), \(address), \(signer.name), \(now))
                    ON CONFLICT (root, fingerprint) DO UPDATE
                    SET peer_name = EXCLUDED.peer_name, address = EXCLUDED.address, signer = EXCLUDED.signer, last_seen = EXCLUDED.last_seen
                    RETURNING root
                )
                UPDATE files SET vacant_since = NULL WHERE root = \(root) AND vacant_since IS NOT NULL
                """, logger)
            return "shared \(file) from \(address)"
        }
    }

    public func holders(of file: FileID, excluding excluded: Set<String>, now: Date) async throws -> TrackerResponse {
        let root = file.description
        let cutoff = now - timeToLive
        let rows = try await read("""
            SELECT 'c'::text, c.signer, c.size, c.name, NOT (c.withdrawn OR f.withdrawn), ''::text, ''::text
            FROM files f JOIN claims c ON c.root = f.root WHERE f.root = \(root)
            UNION ALL
            SELECT 'h'::text, h.signer, 0::bigint, h.peer_name, true, h.address, h.fingerprint
            FROM holders h WHERE h.root = \(root) AND h.last_seen >= \(cutoff)
            """)
        var claims: [String: (size: UInt64, name: String)] = [:]
        var open = false
        var live: [(signer: String, record: HolderRecord)] = []
        for row in rows {
            let (kind, signer, size, name, isOpen, address, fingerprint) = try row.decode((String, String, Int64, String, Bool, String, String).self)
            if kind == "c" {
                claims[signer] = (UInt64(bitPattern: size), name)
                open = open || isOpen
            } else {
                live.append((signer, HolderRecord(address: address, name: name, fingerprint: fingerprint)))
            }
        }
        guard open else { return .failure(code: .fileNotFound, message: "no peer shares \(file)") }
        var perSigner: [String: Int] = [:]
        for holder in live { perSigner[holder.signer, default: 0] += 1 }
        // The claim most live holders announced, ties to the signer whose name sorts first.
        let chosen = perSigner.keys.min { (-perSigner[$0]!, $0) < (-perSigner[$1]!, $1) }
        let listed = live.map(\.record).filter { !excluded.contains($0.fingerprint) }
        guard let chosen, let claim = claims[chosen], !listed.isEmpty else {
            return .failure(code: .noSeeders, message: "no peer holding \(file) is online")
        }
        return .holders(size: claim.size, name: claim.name, Array(listed.shuffled().prefix(TrackerResponse.maximumHolders)))
    }

    public func remove(file: FileID, address: String, identity: VerifiedIdentity, isAdmin: Bool, now: Date) async throws -> RegistryOutcome {
        try await change { connection, logger in
            let root = file.description
            let found = try await connection.rows("""
                SELECT f.withdrawn, c.withdrawn FROM files f LEFT JOIN claims c ON c.root = f.root AND c.signer = \(identity.name)
                WHERE f.root = \(root) FOR UPDATE OF f
                """, logger).first
            guard let (fileWithdrawn, claimWithdrawn) = try found?.decode((Bool, Bool?).self), !fileWithdrawn else {
                throw Refusal(code: .fileNotFound, message: "no peer shares \(file)")
            }
            if isAdmin {
                try await connection.rows("""
                    WITH gone AS (DELETE FROM holders WHERE root = \(root) RETURNING 1)
                    UPDATE files SET withdrawn = true, vacant_since = CASE WHEN EXISTS (SELECT 1 FROM gone) THEN \(now) ELSE vacant_since END
                    WHERE root = \(root)
                    """, logger)
                return "withdrew \(file) from the network"
            }
            if claimWithdrawn == false {
                try await connection.rows("UPDATE claims SET withdrawn = true WHERE root = \(root) AND signer = \(identity.name)", logger)
                let dropped = try await connection.rows("DELETE FROM holders WHERE root = \(root) AND signer = \(identity.name) RETURNING 1", logger)
                if !dropped.isEmpty { try await Self.markVacant([root], now: now, connection, logger) }
                return "withdrew \(file) from the network"
            }
            let dropped = try await connection.rows("DELETE FROM holders WHERE root = \(root) AND fingerprint = \(identity.fingerprint) RETURNING 1", logger)
            guard !dropped.isEmpty else {
                throw Refusal(code: .accessDenied, message: "only the signer of \(file) or an admin may withdraw it, and you hold no entry of it")
            }
            try await Self.markVacant([root], now: now, connection, logger)
            return "removed your entry for \(file)"
        }
    }

    public func allow(file: FileID, now: Date) async throws -> RegistryOutcome {
        try await change { connection, logger in
            let root = file.description
            let found = try await connection.rows("""
                SELECT f.withdrawn OR EXISTS (SELECT 1 FROM claims c WHERE c.root = f.root AND c.withdrawn) FROM files f WHERE f.root = \(root) FOR UPDATE
                """, logger).first
            guard try found?.decode(Bool.self) == true else { throw Refusal(code: .fileNotFound, message: "\(file) is not withdrawn") }
            try await connection.rows("UPDATE claims SET withdrawn = false WHERE root = \(root) AND withdrawn", logger)
            try await connection.rows("""
                UPDATE files SET withdrawn = false,
                    vacant_since = CASE WHEN EXISTS (SELECT 1 FROM holders WHERE root = \(root)) THEN vacant_since ELSE \(now) END
                WHERE root = \(root)
                """, logger)
            return "\(file) may be shared again"
        }
    }

    public func heartbeat(address: String, identity: VerifiedIdentity, now: Date) async throws -> RegistryOutcome {
        let row = try await read("""
            WITH touched AS (UPDATE holders SET last_seen = \(now) WHERE fingerprint = \(identity.fingerprint) AND address = \(address) RETURNING 1)
            SELECT count(*) FROM touched
            """).first
        return .done("refreshed \(try row?.decode(Int.self) ?? 0) entries")
    }

    public func leave(address: String, identity: VerifiedIdentity, now: Date) async throws -> RegistryOutcome {
        try await change { connection, logger in
            let fingerprint = identity.fingerprint
            // The files first, in order, as every change locks them: no two changes wait on each other.
            try await connection.rows("""
                SELECT root FROM files WHERE root IN (SELECT root FROM holders WHERE fingerprint = \(fingerprint) AND address = \(address))
                ORDER BY root FOR UPDATE
                """, logger)
            let dropped = try await connection.rows("DELETE FROM holders WHERE fingerprint = \(fingerprint) AND address = \(address) RETURNING root", logger)
            try await Self.markVacant(dropped.map { try $0.decode(String.self) }, now: now, connection, logger)
            return "left"
        }
    }

    public func expire(now: Date) async throws -> Int {
        let cutoff = now - timeToLive
        return try await transaction { connection, logger in
            let sweeping = try await connection.rows("SELECT pg_try_advisory_xact_lock(\(Self.lockClass), 0::integer)", logger).first
            // Another replica sweeps now: its sweep drops these holders.
            guard try sweeping?.decode(Bool.self) == true else { return 0 }
            try await connection.rows("""
                SELECT root FROM files WHERE root IN (SELECT root FROM holders WHERE last_seen < \(cutoff)) ORDER BY root FOR UPDATE
                """, logger)
            let dropped = try await connection.rows("DELETE FROM holders WHERE last_seen < \(cutoff) RETURNING root", logger).map { try $0.decode(String.self) }
            try await Self.markVacant(Array(Set(dropped)), now: now, connection, logger)
            // Files nobody held for the time to live are forgotten; of those with a withdrawal, only the withdrawals stay.
            try await connection.rows("""
                DELETE FROM claims c USING files f
                WHERE c.root = f.root AND f.vacant_since < \(cutoff) AND NOT c.withdrawn AND NOT EXISTS (SELECT 1 FROM holders h WHERE h.root = f.root)
                """, logger)
            try await connection.rows("""
                DELETE FROM files f WHERE f.vacant_since < \(cutoff) AND NOT f.withdrawn
                AND NOT EXISTS (SELECT 1 FROM claims c WHERE c.root = f.root) AND NOT EXISTS (SELECT 1 FROM holders h WHERE h.root = f.root)
                """, logger)
            return dropped.count
        }
    }

    /// Marks the files among `roots` that nobody holds any more as vacant since `now`.
    private static func markVacant(_ roots: [String], now: Date, _ connection: PostgresConnection, _ logger: Logger) async throws {
        guard !roots.isEmpty else { return }
        try await connection.rows("""
            UPDATE files SET vacant_since = \(now) WHERE root = ANY(\(roots)) AND NOT EXISTS (SELECT 1 FROM holders h WHERE h.root = files.root)
            """, logger)
    }

    // MARK: Running statements

    /// A change refused before anything was written: the transaction rolls back and the refusal is the answer.
    private struct Refusal: Error {
        let code: FailureCode
        let message: String
    }

    /// Runs `body` as one transaction and answers once it commits.
    private func change(_ body: @escaping @Sendable (PostgresConnection, Logger) async throws -> String) async throws -> RegistryOutcome {
        do {
            return .done(try await transaction(body))
        } catch let refusal as Refusal {
            return .refused(code: refusal.code, message: refusal.message)
        }
    }

    /// Runs `body` between BEGIN and COMMIT on one pooled connection, again (up to four times) if
    /// PostgreSQL broke a deadlock or a serialization conflict by aborting it.
    private func transaction<Value: Sendable>(_ body: @escaping @Sendable (PostgresConnection, Logger) async throws -> Value) async throws -> Value {
        try await guarded { [client, logger] in
            try await client.withConnection { connection in
                var attempt = 1
                while true {
                    try await connection.rows("BEGIN", logger)
                    do {
                        let value = try await body(connection, logger)
                        try await connection.rows("COMMIT", logger)
                        return value
                    } catch {
                        _ = try? await connection.rows("ROLLBACK", logger)
                        guard attempt < 4, Self.isConflict(error) else { throw error }
                        attempt += 1
                    }
                }
            }
        }
    }

    /// Runs one statement on its own (a transaction of its own) and returns its rows.
    private func read(_ query: PostgresQuery) async throws -> [PostgresRow] {
        try await guarded { [client, logger] in
            try await client.withConnection { connection in try await connection.rows(query, logger) }
        }
    }

    /// Runs `work` within ``deadline``; an outage (the database down, out of reach, or
    /// silent past the deadline) becomes ``RegistryUnavailable``.
    private func guarded<Value: Sendable>(_ work: @escaping @Sendable () async throws -> Value) async throws -> Value {
        do {
            return try await Deadline.run(within: deadline, on: timers, work)
        } catch let error where error is Refusal || error is RegistryUnavailable {
            throw error
        } catch {
            guard Self.isOutage(error) else { throw error }
            throw RegistryUnavailable("the registry database at \(address) cannot be reached: \(describe(error))")
        }
    }

    /// Whether PostgreSQL aborted the transaction to break a deadlock or a serialization conflict.
    private static func isConflict(_ error: any Error) -> Bool {
        guard let error = error as? PSQLError, let state = error.serverInfo?[.sqlState] else { return false }
        return state == "40001" || state == "40P01"
    }

    /// Whether `error` means the database cannot be used now, rather than a statement it refused.
    static func isOutage(_ error: any Error) -> Bool {
        if error is PostgresDecodingError || error is StoreError { return false }
        guard let error = error as? PSQLError else { return true }
        guard error.code == .server, let state = error.serverInfo?[.sqlState] else { return true }
        // Connection exceptions, too many connections, shutting down or starting, read-only standby, conflicts retried in vain.
        return ["08", "53", "57", "58", "40"].contains(String(state.prefix(2))) || state == "25006"
    }

    /// What went wrong, for a person: the server's message, or the connection's error.
    func describe(_ error: any Error) -> String {
        if error is Deadline.Passed { return "no answer within \(deadline.nanoseconds / 1_000_000_000) s" }
        guard let error = error as? PSQLError else { return "\(error)" }
        if let message = error.serverInfo?[.message] { return message }
        if let underlying = error.underlying { return "\(underlying)" }
        return "\(error.code)"
    }
}

/// A statement that should have found a row did not: the registry's tables were changed outside
/// the tracker.
enum StoreError: Error, CustomStringConvertible {
    case vanished(FileID)

    var description: String {
        switch self {
        case .vanished(let file): return "the row of \(file) vanished inside its own transaction"
        }
    }
}

extension PostgresConnection {
    /// Runs `query` and returns every row it gave.
    @discardableResult
    func rows(_ query: PostgresQuery, _ logger: Logger) async throws -> [PostgresRow] {
        var rows: [PostgresRow] = []
        for try await row in try await self.query(query, logger: logger) { rows.append(row) }
        return rows
    }
}
