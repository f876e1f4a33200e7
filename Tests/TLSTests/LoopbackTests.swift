import Foundation
import NIOCore
import NIOPosix
import PKI
import PKITesting
import TLS
import Testing

/// The NIO handler driving OpenSSL over real sockets on 127.0.0.1.
@Suite(.serialized) struct LoopbackTests {
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)

    private func withServer<T>(_ fixture: TLSFixture, name: String = "tracker1", expecting role: Role = .peer,
                               handshakeTimeout: TimeAmount = .seconds(10), _ body: (LoopbackServer) throws -> T) throws -> T {
        let server = try LoopbackServer(group: group, context: fixture.context(name, expecting: role), handshakeTimeout: handshakeTimeout)
        defer { try? server.close() }
        return try body(server)
    }

    @Test func dataRoundTripsThroughTheHandlerBothWays() throws {
        defer { try? group.syncShutdownGracefully() }
        let fixture = try TLSFixture()
        try withServer(fixture) { server in
            let (client, recorder) = try connectClient(group: group, context: fixture.context("alice", expecting: .tracker), port: server.port)
            defer { try? client.close().wait() }
            #expect(try recorder.outcome.futureResult.wait().name == "tracker1")
            #expect(try server.outcome(0).get().name == "alice")
            let payload = ByteBuffer(bytes: (0..<300_000).map { UInt8(truncatingIfNeeded: $0) })
            try client.writeAndFlush(payload).wait()
            let deadline = Date() + 10
            while try client.eventLoop.submit({ recorder.received.readableBytes }).wait() < payload.readableBytes, Date() < deadline {
                usleep(10_000)
            }
            #expect(try client.eventLoop.submit({ recorder.received }).wait() == payload)
        }
    }

    @Test func writesBeforeTheHandshakeAreHeldAndDelivered() throws {
        defer { try? group.syncShutdownGracefully() }
        let fixture = try TLSFixture()
        try withServer(fixture) { server in
            let (client, recorder) = try connectClient(group: group, context: fixture.context("alice", expecting: .tracker), port: server.port)
            defer { try? client.close().wait() }
            try client.writeAndFlush(ByteBuffer(string: "early")).wait()
            let deadline = Date() + 10
            while try client.eventLoop.submit({ recorder.received.readableBytes }).wait() < 5, Date() < deadline { usleep(10_000) }
            #expect(try client.eventLoop.submit({ String(buffer: recorder.received) }).wait() == "early")
        }
    }

    @Test func aRevokedPeerIsRefusedAfterReloadWithAClearErrorOnBothSides() throws {
        defer { try? group.syncShutdownGracefully() }
        let fixture = try TLSFixture()
        try withServer(fixture) { server in
            try fixture.ca.authority.revoke(name: "alice", reason: .keyCompromise)
            try fixture.reload()
            let (client, recorder) = try connectClient(group: group, context: fixture.context("alice", expecting: .tracker), port: server.port)
            defer { try? client.close().wait() }
            let serverError = try #require(server.outcome(0).failureError as? TLSError)
            #expect(serverError.validation == ValidationError(.revoked, ""))
            let clientError = try #require(try recorder.closed.futureResult.wait() as? TLSError)
            #expect(clientError.code == .ourCertificateRefused)
            #expect(clientError.reason.contains("revoked"))
        }
    }

    @Test func aClientWithoutACertificateIsRefused() throws {
        defer { try? group.syncShutdownGracefully() }
        let fixture = try TLSFixture()
        try withServer(fixture) { server in
            _ = try runOpenSSLClient(port: server.port, ["-tls1_3", "-CAfile", fixture.ca.layout.authorityCertificate])
            let error = try #require(server.outcome(0).failureError as? TLSError)
            #expect(error.code == .noPeerCertificate)
        }
    }

    @Test func aTLS12OnlyClientIsRefused() throws {
        defer { try? group.syncShutdownGracefully() }
        let fixture = try TLSFixture()
        try withServer(fixture) { server in
            let layout = fixture.ca.layout
            let output = try runOpenSSLClient(port: server.port, [
                "-tls1_2", "-cert", layout.certificate(named: "alice"), "-key", layout.privateKey(named: "alice"),
                "-CAfile", layout.authorityCertificate,
            ])
            let error = try #require(server.outcome(0).failureError as? TLSError)
            #expect(error.code == .protocolVersion)
            #expect(output.contains("alert protocol version") || output.contains("no protocols available") || output.contains("wrong version"))
        }
    }

    @Test func aValidOpenSSLClientIsAccepted() throws {
        defer { try? group.syncShutdownGracefully() }
        let fixture = try TLSFixture()
        try withServer(fixture) { server in
            let layout = fixture.ca.layout
            _ = try runOpenSSLClient(port: server.port, [
                "-tls1_3", "-cert", layout.certificate(named: "bob"), "-key", layout.privateKey(named: "bob"),
                "-CAfile", layout.authorityCertificate,
            ])
            #expect(try server.outcome(0).get().name == "bob")
        }
    }

    @Test func aStalledHandshakeCostsOnlyItsOwnSocket() throws {
        defer { try? group.syncShutdownGracefully() }
        let fixture = try TLSFixture()
        try withServer(fixture, handshakeTimeout: .milliseconds(300)) { server in
            let silent = try ClientBootstrap(group: group).connect(host: "127.0.0.1", port: server.port).wait()
            defer { try? silent.close().wait() }
            let error = try #require(server.outcome(0).failureError as? TLSError)
            #expect(error.code == .handshakeTimeout)
            let (client, recorder) = try connectClient(group: group, context: fixture.context("alice", expecting: .tracker), port: server.port)
            defer { try? client.close().wait() }
            #expect(try recorder.outcome.futureResult.wait().name == "tracker1")
            try silent.closeFuture.wait()
        }
    }

    @Test func garbageInsteadOfAHandshakeIsRefusedAndTheServerGoesOn() throws {
        defer { try? group.syncShutdownGracefully() }
        let fixture = try TLSFixture()
        try withServer(fixture) { server in
            let raw = try ClientBootstrap(group: group).connect(host: "127.0.0.1", port: server.port).wait()
            try raw.writeAndFlush(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: x\r\n\r\n")).wait()
            let error = try #require(server.outcome(0).failureError as? TLSError)
            #expect(error.code == .protocolFailure || error.code == .protocolVersion)
            try raw.closeFuture.wait()
            let (client, recorder) = try connectClient(group: group, context: fixture.context("bob", expecting: .tracker), port: server.port)
            defer { try? client.close().wait() }
            #expect(try recorder.outcome.futureResult.wait().name == "tracker1")
        }
    }
}

extension Result {
    var failureError: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
