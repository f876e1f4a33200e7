import Foundation
import MTorrentFormat
import NIOPosix
import PKI
import PKITesting
import Peer
import PostgresTesting
import TLS
import Testing
import Wire

/// `tracker` processes sharing one registry in a PostgreSQL started for the test: a share answered
/// by one replica is listed by the other, even after the first is killed with SIGKILL; a tracker
/// whose database is not there refuses to start and says what to check; SIGTERM stops a replica
/// cleanly.
@Suite(.serialized) struct ReplicaProcessTests {
    private let authority: TrackerProcessAuthority
    private var ca: TestAuthority { authority.ca }

    init() throws {
        authority = try TrackerProcessAuthority()
    }

    private func client(_ name: String, _ tracker: TrackerProcess) throws -> TrackerClient {
        try authority.client(name, tracker, timeoutSeconds: 30)
    }

    private func replica(_ registry: String) throws -> TrackerProcess {
        try TrackerProcess(folder: ca.folder.path, arguments: ["--pki", ca.layout.folder, "--name", "tracker1", "--registry", registry])
    }

    @Test(.enabled(if: TestPostgres.available, Comment(rawValue: TestPostgres.absence)))
    func aShareAnsweredByAKilledReplicaIsListedByTheOther() async throws {
        let postgres = try TestPostgres()
        let first = try replica(postgres.address)
        let second = try replica(postgres.address)
        defer { second.stop() }
        let dataPath = ca.folder.file("data.bin")
        try Data(repeating: 0x5a, count: 42).write(to: URL(fileURLWithPath: dataPath))
        let alice = try SigningIdentity.load(named: "alice", from: ca.layout)
        let torrent = try MTorrent.create(fileAt: dataPath, trackers: [first.address], identity: alice, trust: ca.trust())
        let file = FileID(bytes: torrent.root)!
        let share = TrackerRequest.share(file: file, port: 7001, proof: try #require(torrent.signedHeader).bytes)
        #expect(try await client("alice", first).send(share) == .ok("shared \(file) from 127.0.0.1:7001"))
        guard case .holders(42, "data.bin", let holders) = try await client("bob", second).send(.get(file: file)) else {
            Issue.record("the other replica does not list the share")
            return
        }
        #expect(holders.map(\.name) == ["alice"])
        first.kill9()
        guard case .holders(42, "data.bin", let after) = try await client("bob", second).send(.get(file: file)) else {
            Issue.record("the share was lost when the replica that answered it was killed")
            return
        }
        #expect(after.map(\.name) == ["alice"])
        #expect(try postgres.psql("SELECT count(*) FROM holders") == "1\n")
        // SIGTERM stops a replica gracefully: its pool closes within the bound and it says so.
        second.signal(SIGTERM)
        let deadline = Date() + 20
        while second.process.isRunning, Date() < deadline { try await Task.sleep(for: .milliseconds(50)) }
        #expect(!second.process.isRunning, "a replica still runs 20 s after SIGTERM")
        guard !second.process.isRunning else { return }
        #expect(second.process.terminationStatus == 0)
        #expect(second.remainingOutput().contains("tracker stopped\n"))
    }

    @Test func aTrackerWithoutItsDatabaseExitsSayingWhatToCheck() throws {
        let result = try Command.product(
            "tracker", ["127.0.0.1:0", "--pki", ca.layout.folder, "--name", "tracker1", "--registry", "postgres://tracker@127.0.0.1:1/registry"],
            in: ca.folder.path
        )
        #expect(result.status != 0 && result.status != -1)
        #expect(result.errors.contains("postgres://tracker@127.0.0.1:1/registry"), "\(result.errors)")
        #expect(result.errors.contains("pg_isready"), "\(result.errors)")
    }

    @Test func aPasswordOnTheCommandLineIsRefused() throws {
        let result = try Command.product(
            "tracker", ["127.0.0.1:0", "--pki", ca.layout.folder, "--registry", "postgres://tracker:secret@127.0.0.1:5432/registry"],
            in: ca.folder.path
        )
        #expect(result.status != 0 && result.status != -1)
        #expect(result.errors.contains("registry-password-file"), "\(result.errors)")
    }
}
