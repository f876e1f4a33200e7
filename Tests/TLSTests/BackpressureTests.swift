import Foundation
import NIOCore
import NIOPosix
import PKI
import TLS
import Testing

/// A reader that does not read must slow the writer: the handler neither reads on its own nor
/// hides the writer's backlog from the channel's writability.
@Suite struct BackpressureTests {
    @Test(arguments: TLSBackend.available)
    func aServerThatDoesNotReadMakesTheClientUnwritable(backend: TLSBackend) throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        defer { try? group.syncShutdownGracefully() }
        let fixture = try TLSFixture()
        let serverContext = try fixture.context("tracker1", expecting: .peer, backend: backend)
        let listener = try ServerBootstrap(group: group)
            .childChannelOption(.autoRead, value: false)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(TLSHandler(context: serverContext, side: .server))
                    // Read just enough to complete the handshake, then stop reading.
                    for delay in [0, 50, 100, 150, 200, 300, 400] {
                        channel.eventLoop.scheduleTask(in: .milliseconds(Int64(delay))) { channel.read() }
                    }
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        defer { try? listener.close().wait() }
        let (client, recorder) = try connectClient(
            group: group, context: fixture.context("alice", expecting: .tracker, backend: backend), port: listener.localAddress!.port!
        )
        defer { try? client.close().wait() }
        #expect(try recorder.outcome.futureResult.wait().name == "tracker1")
        usleep(500_000)
        let chunk = client.allocator.buffer(repeating: 1, count: 64 * 1024)
        let limit = 256 * 1024 * 1024
        let deadline = Date() + 10
        var written = 0
        while try client.eventLoop.submit({ client.isWritable }).wait(), written < limit, Date() < deadline {
            client.writeAndFlush(chunk, promise: nil)
            written += chunk.readableBytes
        }
        #expect(written < limit, "the client stayed writable after \(written) bytes to a server that does not read")
    }
}
