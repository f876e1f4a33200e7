import Logging
import PostgresNIO

/// The registry's tables, created or migrated when a replica starts. `minitorrent_schema` holds
/// one row per migration applied; replicas starting together take turns (an advisory lock), and
/// a database migrated by a newer tracker is refused rather than misread.
///
/// - `files`: one row per root hash (64 lowercase hex digits): withdrawn by an admin, and since
///   when nobody holds it (null while held).
/// - `claims`: one row per signer's claim on a root: the size and name its signed header gave,
///   the signer's certificate fingerprint, and whether the signer withdrew it.
/// - `holders`: one row per certificate holding a root: its name, address (`host:port`), the
///   signer whose claim it announced, and when it was last seen.
enum Schema {
    /// Migrations in order; the version of the schema is the number of them applied.
    static let migrations: [[PostgresQuery]] = [
        [
            """
            CREATE TABLE files (
                root text PRIMARY KEY,
                withdrawn boolean NOT NULL DEFAULT false,
                vacant_since timestamptz
            )
            """,
            "CREATE INDEX files_vacant ON files (vacant_since) WHERE vacant_since IS NOT NULL",
            """
            CREATE TABLE claims (
                root text NOT NULL REFERENCES files ON DELETE CASCADE,
                signer text NOT NULL,
                signer_fingerprint text NOT NULL,
                size bigint NOT NULL,
                name text NOT NULL,
                withdrawn boolean NOT NULL DEFAULT false,
                PRIMARY KEY (root, signer)
            )
            """,
            """
            CREATE TABLE holders (
                root text NOT NULL REFERENCES files ON DELETE CASCADE,
                fingerprint text NOT NULL,
                peer_name text NOT NULL,
                address text NOT NULL,
                signer text NOT NULL,
                last_seen timestamptz NOT NULL,
                PRIMARY KEY (root, fingerprint)
            )
            """,
            "CREATE INDEX holders_by_certificate ON holders (fingerprint, address)",
            "CREATE INDEX holders_by_last_seen ON holders (last_seen)",
        ],
    ]

    /// The schema version this tracker reads and writes.
    static var version: Int { migrations.count }

    /// Brings the schema to ``version`` inside the caller's transaction.
    static func migrate(_ connection: PostgresConnection, logger: Logger) async throws {
        try await connection.rows("SELECT pg_advisory_xact_lock(\(PostgresRegistry.lockClass), 1::integer)", logger)
        try await connection.rows("""
            CREATE TABLE IF NOT EXISTS minitorrent_schema (version integer PRIMARY KEY, applied timestamptz NOT NULL DEFAULT now())
            """, logger)
        let current = try await connection.rows("SELECT coalesce(max(version), 0) FROM minitorrent_schema", logger).first?.decode(Int.self) ?? 0
        guard current <= version else { throw SchemaError.newer(found: current, known: version) }
        for (index, statements) in migrations.enumerated() where index + 1 > current {
            for statement in statements { try await connection.rows(statement, logger) }
            try await connection.rows("INSERT INTO minitorrent_schema (version) VALUES (\(index + 1))", logger)
            logger.info("migrated the registry schema", metadata: ["version": "\(index + 1)"])
        }
    }
}

/// A registry database this tracker cannot use as it is.
enum SchemaError: Error, CustomStringConvertible {
    case newer(found: Int, known: Int)

    var description: String {
        switch self {
        case .newer(let found, let known):
            return "the registry's schema is version \(found), newer than this tracker knows (\(known)); run a tracker of the same release as the others"
        }
    }
}

/// The tracker cannot start on this registry database: why, and what to check.
public struct RegistryStartError: Error, CustomStringConvertible {
    public let message: String

    init(address: RegistryAddress, problem: String, hint: Bool) {
        message = !hint
            ? problem
            : """
            \(problem). Check that PostgreSQL runs and listens on \(address.host):\(address.port) \
            (pg_isready -h \(address.host) -p \(address.port)), that database '\(address.database)' exists and pg_hba.conf lets user \
            '\(address.user)' in from this host, the password (registry-password-file or PGPASSWORD) and the sslmode
            """
    }

    static func unreadableCertificateAuthority(_ path: String) -> RegistryStartError {
        RegistryStartError(message: "cannot read the registry's CA certificate file \(path) (registry-ca)")
    }

    private init(message: String) {
        self.message = message
    }

    public var description: String { message }
}
