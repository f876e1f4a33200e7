import Foundation
import Logging
import MTorrentFormat
import NIOCore
import NIOPosix
import PKI
import PKITesting
import Peer
import PostgresRegistry
import PostgresTesting
import TLS
import Tracker
import Wire

/// The shared registry in PostgreSQL next to the embedded one, everything in this process and a
/// PostgreSQL 15 started for the run (fsync on, in a temporary folder): GET/s and durable SHARE/s
/// with the embedded registry, one replica and two replicas on one database; then GET latency
/// (p50, p99, one request at a time) with 10,000 files and with `files` files, bulk-loaded with
/// `generate_series`. Each SHARE connection has a certificate of its own and announces its own
/// few files again and again; every answered share is a committed transaction.
enum PostgresScale {
    /// Connections sharing at once (one certificate each), and the files each announces in turn.
    static let shareConnections = 32
    static let filesPerConnection = 10
    /// GETs timed one after another for each latency figure.
    static let latencySamples = 2_000

    static func run(files: Int, seconds: Int) async throws {
        guard TestPostgres.available else {
            print(TestPostgres.absence)
            return
        }
        let ca = try TestAuthority()
        try ca.identity(.tracker(name: "tracker", dnsNames: [], ipAddresses: ["127.0.0.1"], days: 30))
        for index in 0..<shareConnections { try ca.peer("client\(index)") }
        let tlsContexts = try (0..<shareConnections).map { index in
            let identity = try SigningIdentity.load(named: "client\(index)", from: ca.layout)
            return try TLSBackend.openssl.makeContext(TLSConfiguration(identity: identity, trust: TrustSource(try ca.trust()), peerRole: .tracker))
        }
        let proofs = try (0..<shareConnections).map { connection in
            let identity = try SigningIdentity.load(named: "client\(connection)", from: ca.layout)
            let pem = try String(contentsOfFile: ca.layout.certificate(named: "client\(connection)"), encoding: .utf8)
            return try (0..<filesPerConnection).map { index in
                let file = RegistryScale.root(1_000_000_000 + connection * filesPerConnection + index)
                return (file: file, proof: try RegistryScale.proof(file, size: 1 << 20, name: "s.bin", identity: identity, pem: pem))
            }
        }
        var logger = Logger(label: "tracker")
        logger.logLevel = .error
        let clientGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let serverGroups = (0..<2).map { _ in MultiThreadedEventLoopGroup(numberOfThreads: 1) }
        func configuration(_ folder: String) -> TrackerConfiguration {
            var configuration = TrackerConfiguration(host: "127.0.0.1", port: 0, pki: ca.layout, name: "tracker", aclPath: nil, dataFolder: folder)
            configuration.requestsPerSecond = 0
            configuration.maximumFilesPerPeer = .max
            configuration.maximumConnectionsPerPeer = 64
            return configuration
        }
        let probe = proofs[0][0].file

        let postgres = try TestPostgres(durable: true)
        let address = try RegistryAddress(postgres.address)
        var stores: [PostgresRegistry] = []
        for _ in 0..<2 {
            stores.append(try await PostgresRegistry.open(address, password: nil, timeToLive: 86_400, maximumFilesPerPeer: .max, logger: logger))
        }
        let embedded = try TrackerServer(configuration: configuration(ca.folder.file("embedded")), logger: logger)
        let replicas = try stores.map { try TrackerServer(configuration: configuration(ca.folder.file("unused")), logger: logger, registry: $0) }
        let embeddedPort = try embedded.start(group: serverGroups[0]).port!
        let replicaPorts = try zip(replicas, serverGroups).map { server, group in try server.start(group: group).port! }

        print("setup: \(shareConnections) SHARE connections of \(filesPerConnection) files each; GET over 16 connections, 32 in flight each; \(seconds) s each")
        for (label, ports) in [("embedded seeders.txt", [embeddedPort]), ("PostgreSQL, 1 replica", [replicaPorts[0]]), ("PostgreSQL, 2 replicas", replicaPorts)] {
            let shares = rate(ports: ports) { port, part in
                try shareRate(port: port, part: part, of: ports.count, proofs: proofs, tlsContexts: tlsContexts, group: clientGroup, seconds: seconds)
            }
            let gets = rate(ports: ports) { port, _ in
                try TrackerBenchmark.persistentRate(port: port, tls: tlsContexts[0], group: clientGroup, connections: 16 / ports.count, window: 32, seconds: seconds) { _ in
                    { TrackerRequest.get(file: probe).line + "\n" }
                }
            }
            print(String(format: "%@: GET %.0f/s, durable SHARE %.0f/s", label, gets, shares))
        }

        let latencyClient = TrackerClient(address: TrackerAddress("127.0.0.1:\(replicaPorts[0])")!, tls: tlsContexts[0], group: clientGroup)
        let loaded = Date()
        try postgres.psql(load(from: 1, to: 10_000))
        print(String(format: "loaded 10,000 files in %.1f s", Date().timeIntervalSince(loaded)))
        try await printLatency("10,000 files", count: 10_000, client: latencyClient)
        if files > 10_000 {
            let started = Date()
            var next = 10_001
            while next <= files {
                let last = min(files, next + 999_999)
                try postgres.psql(load(from: next, to: last))
                next = last + 1
            }
            try postgres.psql("VACUUM ANALYZE")
            let size = try postgres.psql("SELECT pg_size_pretty(pg_database_size(current_database()))").trimmingCharacters(in: .whitespacesAndNewlines)
            print(String(format: "loaded %d files (2 holders each) in %.0f s; database %@", files, Date().timeIntervalSince(started), size))
            try await printLatency("\(files) files", count: files, client: latencyClient)
        }
        latencyClient.close()
        for server in replicas + [embedded] { server.stop() }
        for store in stores { await store.close() }
        for group in serverGroups + [clientGroup] { try await group.shutdownGracefully() }
    }

    /// Runs `measure` for each port at once, each with its share of the connections; adds the rates.
    static func rate(ports: [Int], _ measure: @escaping @Sendable (Int, Int) throws -> Double) -> Double {
        let rates = ResultBox(count: ports.count)
        DispatchQueue.concurrentPerform(iterations: ports.count) { part in
            rates.set(part, (try? measure(ports[part], part)) ?? .nan)
        }
        return rates.values.reduce(0, +)
    }

    /// SHARE/s over this part's connections, each with its own certificate and files, all at once.
    static func shareRate(
        port: Int, part: Int, of parts: Int, proofs: [[(file: FileID, proof: [UInt8])]], tlsContexts: [TLSContext], group: EventLoopGroup, seconds: Int
    ) throws -> Double {
        let mine = Array(stride(from: part, to: shareConnections, by: parts))
        let counters = mine.map { _ in Counter() }
        return try TrackerBenchmark.persistentRate(
            port: port, tls: tlsContexts[0], identities: mine.map { tlsContexts[$0] }, group: group, connections: mine.count, window: 4, seconds: seconds
        ) { slot in
            { [counters] in
                let request = proofs[mine[slot]][(counters[slot].next() - 1) % filesPerConnection]
                return TrackerRequest.share(file: request.file, port: 6001, proof: request.proof).line + "\n"
            }
        }
    }

    /// SQL that adds files `first` through `last` (roots as ``RegistryScale/root(_:)`` makes them),
    /// each claimed by one of 10,000 peers and held by two, live for a day.
    static func load(from first: Int, to last: Int) -> String {
        let root = "lpad(to_hex(i::bigint * 2654435761 + 1), 64, '0')"
        let fingerprint = "lpad(to_hex(p + 7), 64, '0')"
        return """
            SET session_replication_role = replica;
            BEGIN;
            INSERT INTO files (root) SELECT \(root) FROM generate_series(\(first), \(last)) AS i;
            INSERT INTO claims (root, signer, signer_fingerprint, size, name)
                SELECT \(root), 'peer' || (i % 10000), lpad(to_hex(i % 10000 + 7), 64, '0'), 1048576 + i, 'file-' || i || '.bin'
                FROM generate_series(\(first), \(last)) AS i;
            INSERT INTO holders (root, fingerprint, peer_name, address, signer, last_seen)
                SELECT \(root), \(fingerprint), 'peer' || p, '10.0.' || (p / 256) || '.' || (p % 256) || ':6881', 'peer' || (i % 10000), now() + interval '1 day'
                FROM generate_series(\(first), \(last)) AS i, LATERAL (VALUES (i % 10000), ((i * 7 + 1) % 10000)) AS h(p);
            COMMIT;
            """
    }

    /// Times GETs of random loaded files, one at a time, and prints p50 and p99.
    static func printLatency(_ label: String, count: Int, client: TrackerClient) async throws {
        var generator = SystemRandomNumberGenerator()
        var samples: [Double] = []
        samples.reserveCapacity(latencySamples)
        for _ in 0..<latencySamples {
            let file = RegistryScale.root(Int.random(in: 1...count, using: &generator))
            let started = ContinuousClock.now
            let answer = try await client.send(.get(file: file))
            let elapsed = ContinuousClock.now - started
            guard case .holders = answer else {
                print("GET \(file) was answered \(answer)")
                return
            }
            samples.append(Double(elapsed.components.attoseconds) / 1e12 + Double(elapsed.components.seconds) * 1e6)
        }
        samples.sort()
        print(String(format: "GET latency with %@: p50 %.0f µs, p99 %.0f µs (%d GETs one at a time)", label, samples[samples.count / 2], samples[samples.count * 99 / 100], samples.count))
    }
}

/// Rates written by concurrent measurements, one slot each.
final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var slots: [Double]

    init(count: Int) {
        slots = Array(repeating: 0, count: count)
    }

    func set(_ index: Int, _ value: Double) {
        lock.withLock { slots[index] = value }
    }

    var values: [Double] { lock.withLock { slots } }
}
