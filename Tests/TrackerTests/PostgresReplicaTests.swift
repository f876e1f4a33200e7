import Foundation
import Logging
import MTorrentFormat
import NIOCore
import PKI
import PKITesting
import Peer
import PostgresRegistry
import PostgresTesting
import TLS
import Testing
import Tracker
import Wire

/// Where a test's trackers keep their registry.
enum StoreKind: String, CaseIterable, CustomTestStringConvertible {
    case embedded
    case postgres

    var testDescription: String { rawValue }
}

/// Two tracker replicas on 127.0.0.1 over one registry: two servers on one PostgreSQL (started in
/// a temporary folder), or, for the embedded kind, the fixture's own server twice.
final class Replicas: @unchecked Sendable {
    let fixture: TrackerFixture
    let postgres: TestPostgres?
    private(set) var stores: [PostgresRegistry] = []
    private var servers: [TrackerServer] = []
    private var addresses: [TrackerAddress] = []

    init(_ kind: StoreKind, acl: String? = nil, timeToLive: TimeInterval = 300, maximumFilesPerPeer: Int = 10_000) async throws {
        fixture = try TrackerFixture(acl: acl, timeToLive: timeToLive) { $0.maximumFilesPerPeer = maximumFilesPerPeer }
        guard kind == .postgres else {
            postgres = nil
            addresses = [fixture.address, fixture.address]
            return
        }
        let postgres = try TestPostgres()
        self.postgres = postgres
        var logger = Logger(label: "tracker-test")
        logger.logLevel = .critical
        let address = try RegistryAddress(postgres.address)
        for _ in 0..<2 {
            let store = try await PostgresRegistry.open(
                address, password: nil, timeToLive: timeToLive, maximumFilesPerPeer: maximumFilesPerPeer, deadline: .seconds(10), logger: logger
            )
            var configuration = fixture.server.configuration
            configuration.port = 0
            let server = try TrackerServer(configuration: configuration, logger: logger, registry: store)
            let bound = try server.start(group: fixture.group)
            stores.append(store)
            servers.append(server)
            addresses.append(TrackerAddress("127.0.0.1:\(bound.port!)")!)
        }
    }

    /// The registry behind replica `index`.
    func store(_ index: Int) -> any RegistryStore {
        stores.isEmpty ? fixture.server.registry : stores[index]
    }

    /// A client speaking for `name` to replica `index` (0 or 1).
    func client(_ name: String, _ index: Int) throws -> TrackerClient {
        let identity = try SigningIdentity.load(named: name, from: fixture.ca.layout)
        let tls = try TLSBackend.openssl.makeContext(TLSConfiguration(identity: identity, trust: TrustSource(try fixture.ca.trust()), peerRole: .tracker))
        return TrackerClient(address: addresses[index], tls: tls, group: fixture.group, timeoutSeconds: 30)
    }

    func close() async {
        for server in servers { server.stop() }
        for store in stores { await store.close() }
    }

    deinit {
        for server in servers { server.stop() }
    }
}

/// The shared registry in PostgreSQL: what one replica records the other answers, with the
/// embedded registry's semantics (each parity test runs on both), expiry done once, and a
/// database lost and back. Every test starts its own PostgreSQL and skips without one.
@Suite(.serialized, .enabled(if: TestPostgres.available, Comment(rawValue: TestPostgres.absence)))
struct PostgresReplicaTests {
    @Test func aShareAtOneReplicaIsAnsweredByTheOther() async throws {
        let replicas = try await Replicas(.postgres)
        #expect(try await replicas.client("alice", 0).send(replicas.fixture.share(fileA, size: 77, name: "notes.txt", port: 6001, signedBy: "alice"))
            == .ok("shared \(fileA) from 127.0.0.1:6001"))
        guard case .holders(77, "notes.txt", let holders) = try await replicas.client("bob", 1).send(.get(file: fileA)) else {
            Issue.record("the other replica does not know the share")
            return
        }
        #expect(holders.map(\.name) == ["alice"])
        #expect(try await replicas.client("alice", 1).send(.heartbeat(port: 6001)) == .ok("refreshed 1 entries"))
        #expect(try await replicas.client("alice", 1).send(.leave(port: 6001)) == .ok("left"))
        #expect(try await replicas.client("bob", 0).send(.get(file: fileA)) == .failure(code: .noSeeders, message: "no peer holding \(fileA) is online"))
        #expect(try await replicas.store(0).counts.files == 1)
        #expect(try await replicas.store(0).counts.holders == 0)
        await replicas.close()
    }

    @Test(arguments: StoreKind.allCases) func oneCertificateIsOneHolderWithinItsQuota(_ kind: StoreKind) async throws {
        let replicas = try await Replicas(kind, maximumFilesPerPeer: 2)
        let fixture = replicas.fixture
        let fileC = FileID(hex: String(repeating: "c3", count: 32))!
        #expect(try await replicas.client("alice", 0).send(fixture.share(fileA, port: 6001, signedBy: "alice")) == .ok("shared \(fileA) from 127.0.0.1:6001"))
        #expect(try await replicas.client("alice", 1).send(fixture.share(fileA, port: 6002, signedBy: "alice")) == .ok("shared \(fileA) from 127.0.0.1:6002"))
        guard case .holders(_, _, let holders) = try await replicas.client("bob", 0).send(.get(file: fileA)) else {
            Issue.record("no holders")
            return
        }
        #expect(holders.map(\.address) == ["127.0.0.1:6002"])
        #expect(try await replicas.client("alice", 0).send(fixture.share(fileB, port: 6002, signedBy: "bob")) == .ok("shared \(fileB) from 127.0.0.1:6002"))
        guard case .failure(.quota, _) = try await replicas.client("alice", 1).send(fixture.share(fileC, port: 6002, signedBy: "alice")) else {
            Issue.record("a third file was taken over a quota of two")
            return
        }
        #expect(try await replicas.client("alice", 1).send(fixture.share(fileA, port: 6002, signedBy: "alice")) == .ok("shared \(fileA) from 127.0.0.1:6002"))
        #expect(try await replicas.client("bob", 1).send(fixture.share(fileC, port: 6003, signedBy: "alice")) == .ok("shared \(fileC) from 127.0.0.1:6003"))
        #expect(try await replicas.store(1).counts.files == 3)
        #expect(try await replicas.store(1).counts.holders == 3)
        await replicas.close()
    }

    @Test(arguments: StoreKind.allCases) func onlyTheSignerOrAnAdminWithdrawsAndAnAdminAllows(_ kind: StoreKind) async throws {
        let replicas = try await Replicas(kind, acl: """
            allow share,get,remove any
            allow admin peer carol
            """)
        let fixture = replicas.fixture
        _ = try await replicas.client("alice", 0).send(fixture.share(fileA, port: 6001, signedBy: "alice"))
        guard case .failure(.accessDenied, _) = try await replicas.client("bob", 1).send(.remove(file: fileA, port: 6002)) else {
            Issue.record("a non-holder, non-signer withdrew the file")
            return
        }
        _ = try await replicas.client("bob", 1).send(fixture.share(fileA, port: 6002, signedBy: "alice"))
        #expect(try await replicas.client("bob", 0).send(.remove(file: fileA, port: 6002)) == .ok("removed your entry for \(fileA)"))
        guard case .holders(_, _, let holders) = try await replicas.client("bob", 1).send(.get(file: fileA)) else {
            Issue.record("the signer's entry vanished with bob's")
            return
        }
        #expect(holders.map(\.name) == ["alice"])
        #expect(try await replicas.client("alice", 1).send(.remove(file: fileA, port: 6001)) == .ok("withdrew \(fileA) from the network"))
        #expect(try await replicas.client("carol", 0).send(.get(file: fileA)) == .failure(code: .fileNotFound, message: "no peer shares \(fileA)"))
        guard case .failure(.withdrawn, _) = try await replicas.client("bob", 0).send(fixture.share(fileA, port: 6002, signedBy: "alice")) else {
            Issue.record("a withdrawn file was shared again without an admin")
            return
        }
        guard case .failure(.accessDenied, _) = try await replicas.client("alice", 0).send(.allow(file: fileA)) else {
            Issue.record("a non-admin allowed a withdrawn file")
            return
        }
        #expect(try await replicas.client("carol", 1).send(.allow(file: fileA)) == .ok("\(fileA) may be shared again"))
        #expect(try await replicas.client("bob", 0).send(fixture.share(fileA, port: 6002, signedBy: "alice")) == .ok("shared \(fileA) from 127.0.0.1:6002"))
        #expect(try await replicas.client("carol", 1).send(.remove(file: fileA, port: 6003)) == .ok("withdrew \(fileA) from the network"))
        guard case .failure(.withdrawn, _) = try await replicas.client("alice", 0).send(fixture.share(fileA, port: 6001, signedBy: "alice")) else {
            Issue.record("a file an admin withdrew was shared again")
            return
        }
        await replicas.close()
    }

    @Test func twoReplicasExpiringTogetherDropEachHolderOnce() async throws {
        let replicas = try await Replicas(.postgres, timeToLive: 60)
        let files = (0..<40).map { FileID(bytes: [UInt8](repeating: UInt8($0), count: 31) + [0xee])! }
        let sharers = [try replicas.client("alice", 0), try replicas.client("bob", 1)]
        let carol = [try replicas.client("carol", 1), try replicas.client("carol", 0)]
        for (index, file) in files.enumerated() {
            let answer = try await sharers[index % 2].send(replicas.fixture.share(file, port: 6001, signedBy: "alice"))
            #expect(answer == .ok("shared \(file) from 127.0.0.1:6001"))
            _ = try await carol[index % 2].send(replicas.fixture.share(file, port: 6002, signedBy: "alice"))
        }
        #expect(try await replicas.store(0).counts.files == 40)
        #expect(try await replicas.store(0).counts.holders == 80)
        let later = Date() + 61
        var dropped = 0
        for _ in 0..<3 {
            async let first = try replicas.store(0).expire(now: later)
            async let second = try replicas.store(1).expire(now: later)
            dropped += try await first + second
        }
        #expect(dropped == 80)
        // Vacant since the sweep: the files are forgotten one time to live later.
        #expect(try await replicas.store(1).counts.files == 40)
        #expect(try await replicas.store(1).counts.holders == 0)
        #expect(try await replicas.store(1).expire(now: later + 61) == 0)
        #expect(try await replicas.store(0).counts.files == 0)
        #expect(try await replicas.store(0).counts.holders == 0)
        await replicas.close()
    }

    @Test func aReplicaAnswersUnavailableWhileTheDatabaseIsDownAndRecovers() async throws {
        let replicas = try await Replicas(.postgres)
        let postgres = try #require(replicas.postgres)
        let fixture = replicas.fixture
        #expect(try await replicas.client("alice", 0).send(fixture.share(fileA, port: 6001, signedBy: "alice")) == .ok("shared \(fileA) from 127.0.0.1:6001"))
        try postgres.stop()
        let refused = try await replicas.client("alice", 0).send(fixture.share(fileB, port: 6001, signedBy: "alice"))
        guard case .failure(.unavailable, _) = refused else {
            Issue.record("a share without its database was answered \(refused)")
            return
        }
        guard case .failure(.unavailable, _) = try await replicas.client("bob", 1).send(.get(file: fileA)) else {
            Issue.record("a GET without the database was not answered UNAVAILABLE")
            return
        }
        try postgres.start()
        var answer = TrackerResponse.ok("")
        for _ in 0..<60 {
            answer = try await replicas.client("bob", 0).send(.get(file: fileA))
            if case .holders = answer { break }
            try await Task.sleep(for: .milliseconds(500))
        }
        guard case .holders(_, _, let holders) = answer else {
            Issue.record("the replica did not recover: \(answer)")
            return
        }
        #expect(holders.map(\.name) == ["alice"])
        #expect(try await replicas.client("bob", 1).send(.get(file: fileB)) == .failure(code: .fileNotFound, message: "no peer shares \(fileB)"))
        await replicas.close()
    }
}

/// The registry over TLS: a server certificate checked against `registry-ca` (verify-full), or
/// not at all (require); one signed by another CA is refused at start.
@Suite(.enabled(if: TestPostgres.available, Comment(rawValue: TestPostgres.absence)))
struct PostgresTLSTests {
    /// Other suites run beside this one on the same cores: the accepted connections get more than
    /// a tracker's default 5 s.
    static let deadline = TimeAmount.seconds(30)

    @Test func verifyFullAcceptsTheRightCertificateAndRefusesAnother() async throws {
        let postgres = try TestPostgres()
        let folder = postgres.folder
        let openssl = Process()
        openssl.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        openssl.arguments = [
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost", "-keyout", "\(folder)/tls.key", "-out", "\(folder)/tls.crt",
        ]
        openssl.standardOutput = FileHandle.nullDevice
        openssl.standardError = FileHandle.nullDevice
        try openssl.run()
        openssl.waitUntilExit()
        try #require(openssl.terminationStatus == 0)
        try postgres.enableTLS(certificate: "\(folder)/tls.crt", key: "\(folder)/tls.key")
        var logger = Logger(label: "tracker-test")
        logger.logLevel = .critical
        let base = "postgres://\(TestPostgres.user)@localhost:\(postgres.port)/\(TestPostgres.database)"
        let verified = try await PostgresRegistry.open(
            try RegistryAddress(base + "?sslmode=verify-full"), password: nil, certificateAuthorityFile: "\(folder)/tls.crt", timeToLive: 300,
            deadline: Self.deadline, logger: logger
        )
        #expect(try await verified.counts.files == 0)
        let encrypted = try postgres.psql("SELECT count(*) FROM pg_stat_ssl WHERE ssl AND pid <> pg_backend_pid()")
        #expect((Int(encrypted.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0) >= 1, "the registry's connections are not encrypted")
        await verified.close()
        let unverified = try await PostgresRegistry.open(
            try RegistryAddress(base + "?sslmode=require"), password: nil, timeToLive: 300, deadline: Self.deadline, logger: logger
        )
        #expect(try await unverified.counts.holders == 0)
        await unverified.close()
        let other = try TestAuthority()
        await #expect(throws: RegistryStartError.self) {
            _ = try await PostgresRegistry.open(
                try RegistryAddress(base + "?sslmode=verify-full"), password: nil, certificateAuthorityFile: other.layout.authorityCertificate,
                timeToLive: 300, logger: logger
            )
        }
    }
}

/// Registry addresses are read strictly, and a database that cannot be reached stops the start
/// with the address and what to check.
@Suite struct RegistryAddressTests {
    @Test func aFullAddressIsRead() throws {
        let address = try RegistryAddress("postgres://tracker@db.example.org:6543/minitorrent?sslmode=verify-full")
        #expect(address.user == "tracker")
        #expect(address.host == "db.example.org")
        #expect(address.port == 6543)
        #expect(address.database == "minitorrent")
        #expect(address.tlsMode == .verifyFull)
        #expect(try RegistryAddress("postgresql://u@[::1]/d").description == "postgres://u@[::1]:5432/d")
    }

    @Test(arguments: [
        ("postgres://u:secret@h:5432/d", RegistryAddressError.passwordInAddress),
        ("mysql://u@h/d", .notPostgres),
        ("postgres://h:5432/d", .missingUser),
        ("postgres://u@h:5432", .missingDatabase),
        ("postgres://u@h:70000/d", .badPort("70000")),
        ("postgres://u@h/d?sslmode=allow", .unknownTLSMode("allow")),
        ("postgres://u@h/d?host=/tmp", .unknownOption("host=/tmp")),
        ("postgres://u@h/d;drop", .badDatabase("d;drop")),
    ])
    func aBadAddressIsRefused(_ text: String, _ expected: RegistryAddressError) {
        #expect(throws: expected) { try RegistryAddress(text) }
    }

    @Test func anUnreachableDatabaseNamesTheAddressAndWhatToCheck() async throws {
        let address = try RegistryAddress("postgres://tracker@127.0.0.1:1/registry")
        do {
            var logger = Logger(label: "tracker-test")
            logger.logLevel = .critical
            _ = try await PostgresRegistry.open(address, password: nil, timeToLive: 300, logger: logger)
            Issue.record("a registry opened on a closed port")
        } catch let error as RegistryStartError {
            #expect(error.message.contains("127.0.0.1:1"))
            #expect(error.message.contains("pg_isready"))
        }
    }
}
