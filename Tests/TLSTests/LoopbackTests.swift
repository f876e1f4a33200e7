import Foundation
import NIOCore
import NIOPosix
import PKI
import PKITesting
import TLS
import Testing

/// The NIO handler driving each backend's server over real sockets on 127.0.0.1, against our
/// OpenSSL client and the `openssl s_client` tool.
@Suite(.serialized) struct LoopbackTests {
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)

    /// Runs `body` with a tracker1 server on the given backend that expects peers.
    private func withServer<T>(_ fixture: TLSFixture, backend: TLSBackend, handshakeTimeout: TimeAmount = .seconds(10),
                               _ body: (LoopbackServer) throws -> T) throws -> T {
        let context = try fixture.context("tracker1", expecting: .peer, backend: backend)
        let server = try LoopbackServer(group: group, context: context, handshakeTimeout: handshakeTimeout)
        defer { try? server.close() }
        return try body(server)
    }

    @Test(arguments: TLSBackend.available)
    func dataRoundTripsThroughTheHandlerBothWays(backend: TLSBackend) throws {
        defer { try? group.syncShutdownGracefully() }
        let fixture = try TLSFixture()
        try withServer(fixture, backend: backend) { server in
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

    @Test(arguments: TLSBackend.available)
    func writesBeforeTheHandshakeAreHeldAndDelivered(backend: TLSBackend) throws {
        defer { try? group.syncShutdownGracefully() }
        let fixture = try TLSFixture()
        try withServer(fixture, backend: backend) { server in
            let (client, recorder) = try connectClient(group: group, context: fixture.context("alice", expecting: .tracker), port: server.port)
            defer { try? client.close().wait() }
            try client.writeAndFlush(ByteBuffer(string: "early")).wait()
            let deadline = Date() + 10
            while try client.eventLoop.submit({ recorder.received.readableBytes }).wait() < 5, Date() < deadline { usleep(10_000) }
            #expect(try client.eventLoop.submit({ String(buffer: recorder.received) }).wait() == "early")
        }
    }

    @Test(arguments: TLSBackend.available)
    func aRevokedPeerIsRefusedAfterReloadWithAClearErrorOnBothSides(backend: TLSBackend) throws {
        defer { try? group.syncShutdownGracefully() }
        let fixture = try TLSFixture()
        try withServer(fixture, backend: backend) { server in
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

    @Test(arguments: TLSBackend.available)
    func aClientWithoutACertificateIsRefused(backend: TLSBackend) throws {
        defer { try? group.syncShutdownGracefully() }
        let fixture = try TLSFixture()
        try withServer(fixture, backend: backend) { server in
            _ = try runOpenSSLClient(port: server.port, ["-tls1_3", "-CAfile", fixture.ca.layout.authorityCertificate])
            let error = try #require(server.outcome(0).failureError as? TLSError)
            #expect(error.code == .noPeerCertificate)
        }
    }

    @Test(arguments: TLSBackend.available)
    func aTLS12OnlyClientIsRefused(backend: TLSBackend) throws {
        defer { try? group.syncShutdownGracefully() }
        let fixture = try TLSFixture()
        try withServer(fixture, backend: backend) { server in
            let layout = fixture.ca.layout
            let output = try runOpenSSLClient(port: server.port, [
                "-tls1_2", "-cert", layout.certificate(named: "alice"), "-key", layout.privateKey(named: "alice"),
                "-CAfile", layout.authorityCertificate,
            ])
            let error = try #require(server.outcome(0).failureError as? TLSError)
            #expect(error.code == .protocolVersion, "\(error.reason) | \(output.suffix(300))")
            #expect(output.contains("alert protocol version") || output.contains("no protocols available") || output.contains("wrong version"))
        }
    }

    @Test(arguments: TLSBackend.available)
    func aValidOpenSSLClientIsAccepted(backend: TLSBackend) throws {
        defer { try? group.syncShutdownGracefully() }
        let fixture = try TLSFixture()
        try withServer(fixture, backend: backend) { server in
            let layout = fixture.ca.layout
            _ = try runOpenSSLClient(port: server.port, [
                "-tls1_3", "-cert", layout.certificate(named: "bob"), "-key", layout.privateKey(named: "bob"),
                "-CAfile", layout.authorityCertificate,
            ])
            #expect(try server.outcome(0).get().name == "bob")
        }
    }

    @Test(arguments: TLSBackend.available)
    func aStalledHandshakeCostsOnlyItsOwnSocket(backend: TLSBackend) throws {
        defer { try? group.syncShutdownGracefully() }
        let fixture = try TLSFixture()
        try withServer(fixture, backend: backend, handshakeTimeout: .milliseconds(300)) { server in
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

    @Test(arguments: TLSBackend.available)
    func garbageInsteadOfAHandshakeIsRefusedAndTheServerGoesOn(backend: TLSBackend) throws {
        defer { try? group.syncShutdownGracefully() }
        let fixture = try TLSFixture()
        try withServer(fixture, backend: backend) { server in
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

/// How connections end: close_notify both ways, or an unclean end that is reported as such.
@Suite struct ShutdownTests {
    /// Connects alice to a tracker1 server on `backend` and runs `body` once both handshakes are done.
    private func withConnection(backend: TLSBackend, _ body: (LoopbackServer, Channel, Recorder) throws -> Void) throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        defer { try? group.syncShutdownGracefully() }
        let fixture = try TLSFixture()
        let server = try LoopbackServer(group: group, context: fixture.context("tracker1", expecting: .peer, backend: backend))
        defer { try? server.close() }
        let (client, recorder) = try connectClient(group: group, context: fixture.context("alice", expecting: .tracker, backend: backend), port: server.port)
        #expect(try recorder.outcome.futureResult.wait().name == "tracker1")
        #expect(try server.outcome(0).get().name == "alice")
        try body(server, client, recorder)
    }

    @Test(arguments: TLSBackend.available)
    func aCleanCloseIsNotAnError(backend: TLSBackend) throws {
        try withConnection(backend: backend) { server, client, recorder in
            try client.close().wait()
            #expect(try recorder.closed.futureResult.wait() == nil)
            #expect(try server.closedError(0) == nil)
        }
    }

    @Test(arguments: TLSBackend.available)
    func anEndWithoutCloseNotifyIsReported(backend: TLSBackend) throws {
        try withConnection(backend: backend) { server, client, _ in
            // Close the socket underneath TLS, as a network attacker cutting the stream would.
            try client.eventLoop.flatSubmit {
                let pipeline = client.pipeline.syncOperations
                do {
                    return pipeline.removeHandler(try pipeline.handler(type: TLSHandler.self))
                } catch {
                    return client.eventLoop.makeFailedFuture(error)
                }
            }.wait()
            try client.close().wait()
            let error = try #require(try server.closedError(0) as? TLSError)
            #expect(error.code == .uncleanShutdown)
        }
    }
}
