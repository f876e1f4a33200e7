import Foundation
import PKI
import PKITesting
import TLS
import Testing

/// Real handshakes between two engines, pumped through memory, for every pair of backends.
@Suite struct EnginePairTests {
    private func pair(client: TLSContext, server: TLSContext, dialing host: String? = "127.0.0.1") throws -> EnginePair {
        EnginePair(client: try client.makeEngine(side: .client(dialedHost: host)), server: try server.makeEngine(side: .server))
    }

    @Test(arguments: backendPairs)
    func peerAndTrackerSeeEachOthersIdentity(backends: (client: TLSBackend, server: TLSBackend)) throws {
        let fixture = try TLSFixture()
        let outcome = try pair(client: fixture.context("alice", expecting: .tracker, backend: backends.client), server: fixture.context("tracker1", expecting: .peer, backend: backends.server)).handshake()
        #expect(outcome.client?.identity?.name == "tracker1")
        #expect(outcome.client?.identity?.role == .tracker)
        #expect(outcome.server?.identity?.name == "alice")
        #expect(outcome.server?.identity?.groups == ["lab"])
    }

    @Test(arguments: backendPairs)
    func peerToPeerWorks(backends: (client: TLSBackend, server: TLSBackend)) throws {
        let fixture = try TLSFixture()
        let outcome = try pair(client: fixture.context("alice", expecting: .peer, backend: backends.client), server: fixture.context("bob", expecting: .peer, backend: backends.server)).handshake()
        #expect(outcome.client?.identity?.name == "bob")
        #expect(outcome.server?.identity?.name == "alice")
    }

    @Test(arguments: backendPairs)
    func plaintextCrossesBothWays(backends: (client: TLSBackend, server: TLSBackend)) throws {
        let fixture = try TLSFixture()
        let pair = try pair(client: fixture.context("alice", expecting: .peer, backend: backends.client), server: fixture.context("bob", expecting: .peer, backend: backends.server))
        _ = pair.handshake()
        let message = Array("hello over TLS 1.3".utf8)
        _ = message.withUnsafeBytes { pair.client.writePlaintext($0) }
        _ = EnginePair.move(from: pair.client, to: pair.server)
        var received = [UInt8](repeating: 0, count: 100)
        let step = received.withUnsafeMutableBytes { pair.server.readPlaintext(into: $0) }
        guard case .complete(let count) = step else {
            Issue.record("no plaintext arrived")
            return
        }
        #expect(Array(received.prefix(count)) == message)
    }

    @Test(arguments: backendPairs)
    func aClientFromAnotherCAIsRefusedByTheServerAndToldWhy(backends: (client: TLSBackend, server: TLSBackend)) throws {
        let fixture = try TLSFixture()
        let other = try TestAuthority()
        try other.peer("mallory")
        let outcome = try pair(
            client: fixture.context("mallory", expecting: .tracker, backend: backends.client, authority: other),
            server: fixture.context("tracker1", expecting: .peer, backend: backends.server)
        ).handshake()
        #expect(outcome.server?.error?.validation == ValidationError(.unknownAuthority, ""))
        #expect(outcome.client?.error == TLSError(.ourCertificateRefused, ""))
        #expect(outcome.client?.error?.reason.contains("not issued by its CA") == true)
    }

    @Test(arguments: backendPairs)
    func aServerFromAnotherCAIsRefusedByTheClient(backends: (client: TLSBackend, server: TLSBackend)) throws {
        let fixture = try TLSFixture()
        let other = try TestAuthority()
        try other.identity(.tracker(name: "fake", dnsNames: [], ipAddresses: ["127.0.0.1"], days: 30))
        let outcome = try pair(
            client: fixture.context("alice", expecting: .tracker, backend: backends.client),
            server: fixture.context("fake", expecting: .peer, backend: backends.server, authority: other)
        ).handshake()
        #expect(outcome.client?.error?.validation == ValidationError(.unknownAuthority, ""))
        // An OpenSSL client refusing the server's certificate sends its alert before switching to
        // encrypted records, which a GnuTLS server can only report as a decryption failure.
        if backends == (.openssl, .gnutls) {
            #expect(outcome.server?.error != nil)
        } else {
            #expect(outcome.server?.error == TLSError(.ourCertificateRefused, ""))
        }
    }

    @Test(arguments: backendPairs)
    func aRevokedClientIsRefusedOnceTheCRLIsReloaded(backends: (client: TLSBackend, server: TLSBackend)) throws {
        let fixture = try TLSFixture()
        let client = try fixture.context("alice", expecting: .tracker, backend: backends.client)
        let server = try fixture.context("tracker1", expecting: .peer, backend: backends.server)
        #expect(try pair(client: client, server: server).handshake().server?.identity?.name == "alice")
        try fixture.ca.authority.revoke(name: "alice", reason: .keyCompromise)
        try fixture.reload()
        let outcome = try pair(client: client, server: server).handshake()
        #expect(outcome.server?.error?.validation == ValidationError(.revoked, ""))
        #expect(outcome.client?.error?.reason.contains("revoked") == true)
    }

    @Test(arguments: backendPairs)
    func anExpiredClientIsRefused(backends: (client: TLSBackend, server: TLSBackend)) throws {
        let fixture = try TLSFixture()
        try fixture.ca.peer("old", days: 1, now: Date() - 3 * 86400)
        let outcome = try pair(client: fixture.context("old", expecting: .tracker, backend: backends.client), server: fixture.context("tracker1", expecting: .peer, backend: backends.server)).handshake()
        #expect(outcome.server?.error?.validation == ValidationError(.expired, ""))
        #expect(outcome.client?.error?.reason.contains("expired") == true)
    }

    @Test(arguments: backendPairs)
    func aPeerCertificateCannotActAsATracker(backends: (client: TLSBackend, server: TLSBackend)) throws {
        let fixture = try TLSFixture()
        let outcome = try pair(client: fixture.context("alice", expecting: .tracker, backend: backends.client), server: fixture.context("bob", expecting: .peer, backend: backends.server)).handshake()
        #expect(outcome.client?.error?.validation == ValidationError(.wrongRole, ""))
    }

    @Test(arguments: backendPairs)
    func aTrackerCertificateCannotActAsAPeer(backends: (client: TLSBackend, server: TLSBackend)) throws {
        let fixture = try TLSFixture()
        let outcome = try pair(client: fixture.context("tracker1", expecting: .tracker, backend: backends.client), server: fixture.context("tracker1", expecting: .peer, backend: backends.server)).handshake()
        #expect(outcome.server?.error?.validation == ValidationError(.wrongRole, ""))
        #expect(outcome.client?.error?.reason.contains("wrong role") == true)
    }

    @Test(arguments: backendPairs)
    func aTrackerMustBeNamedByTheAddressDialed(backends: (client: TLSBackend, server: TLSBackend)) throws {
        let fixture = try TLSFixture()
        let client = try fixture.context("alice", expecting: .tracker, backend: backends.client)
        let server = try fixture.context("tracker1", expecting: .peer, backend: backends.server)
        #expect(try pair(client: client, server: server, dialing: "localhost").handshake().client?.identity?.name == "tracker1")
        let outcome = try pair(client: client, server: server, dialing: "127.0.0.2").handshake()
        #expect(outcome.client?.error == TLSError(.nameMismatch, ""))
        #expect(try pair(client: client, server: server, dialing: "tracker.example").handshake().client?.error == TLSError(.nameMismatch, ""))
    }
}
