import NIOCore
import NIOPosix
import PKI
import TLS
import Wire

/// Sends arbitrary lines to the tracker over mutual TLS and returns the first line of each answer.
final class RawLineClient: @unchecked Sendable {
    let channel: Channel
    private let collector: LineCollector

    init(fixture: TrackerFixture, name: String) throws {
        let identity = try SigningIdentity.load(named: name, from: fixture.ca.layout)
        let tls = try TLSBackend.openssl.makeContext(TLSConfiguration(identity: identity, trust: TrustSource(try fixture.ca.trust()), peerRole: .tracker))
        let collector = LineCollector()
        channel = try ClientBootstrap(group: fixture.group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        TLSHandler(context: tls, side: .client(dialedHost: "127.0.0.1")),
                        ByteToMessageHandler(LineFrameDecoder(maximumLength: 64 * 1024)),
                        collector,
                    ])
                }
            }
            .connect(host: "127.0.0.1", port: Int(fixture.address.port)).wait()
        self.collector = collector
    }

    func exchange(_ line: String) async throws -> String {
        let promise = channel.eventLoop.makePromise(of: String.self)
        let collector = self.collector
        let channel = self.channel
        try await channel.eventLoop.submit {
            // Closed already: no channelInactive will come to fail the promise.
            guard channel.isActive else { return promise.fail(WireError.closed) }
            collector.waiting.append(promise)
            channel.writeAndFlush(channel.allocator.buffer(string: line + "\n"), promise: nil)
        }.get()
        return try await promise.futureResult.get()
    }

    /// Sends every line in one write and returns the first line of each answer, in order: the
    /// tracker reads them back to back, however slowly this test is scheduled.
    func exchange(all lines: [String]) async throws -> [String] {
        var answers: [String] = []
        for answer in try await send(all: lines) { answers.append(try await answer.get()) }
        return answers
    }

    /// Sends every line in one write; each future is the first line of its answer.
    func send(all lines: [String]) async throws -> [EventLoopFuture<String>] {
        try await channel.eventLoop.submit { [collector, channel] () -> [EventLoopFuture<String>] in
            let promises = lines.map { _ in channel.eventLoop.makePromise(of: String.self) }
            guard channel.isActive else {
                for promise in promises { promise.fail(WireError.closed) }
                return promises.map(\.futureResult)
            }
            collector.waiting.append(contentsOf: promises)
            channel.writeAndFlush(channel.allocator.buffer(string: lines.map { $0 + "\n" }.joined()), promise: nil)
            return promises.map(\.futureResult)
        }.get()
    }

    deinit {
        channel.close(promise: nil)
    }
}

final class LineCollector: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = String
    var waiting: [EventLoopPromise<String>] = []

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if !waiting.isEmpty { waiting.removeFirst().succeed(unwrapInboundIn(data)) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        for promise in waiting { promise.fail(WireError.closed) }
        waiting = []
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        for promise in waiting { promise.fail(error) }
        waiting = []
        context.close(promise: nil)
    }
}
