import NIOCore
import NIOPosix
import PKI
import TLS
import Testing

/// The handler inside NIO's async channel API, the way trackers and peers will use it.
@Suite struct AsyncChannelTests {
    @Test(arguments: TLSBackend.available)
    func echoThroughAnAsyncChannel(backend: TLSBackend) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let fixture = try TLSFixture()
        let server = try LoopbackServer(group: group, context: fixture.context("tracker1", expecting: .peer, backend: backend))
        let clientContext = try fixture.context("alice", expecting: .tracker, backend: backend)
        let channel = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: server.port) { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(TLSHandler(context: clientContext, side: .client(dialedHost: "127.0.0.1")))
                return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
            }
        }
        let echoed = try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: "ping over TLS"))
            var collected = ByteBuffer()
            for try await var chunk in inbound {
                collected.writeBuffer(&chunk)
                if collected.readableBytes >= 13 { break }
            }
            return String(buffer: collected)
        }
        #expect(echoed == "ping over TLS")
        #expect(try server.outcome(0).get().name == "alice")
        try server.close()
        try await group.shutdownGracefully()
    }
}
