import MTorrentFormat
import NIOCore
import NIOPosix
import TLS
import Wire

/// Why a tracker could not be asked.
public struct TrackerUnreachable: Error, CustomStringConvertible {
    public let tracker: TrackerAddress
    public let reason: String

    public var description: String { "tracker \(tracker): \(reason)" }
}

/// A persistent mutual-TLS connection to one tracker, opened on first use and reopened after a
/// failure. Requests are answered in order.
public final class TrackerClient: @unchecked Sendable {
    public let address: TrackerAddress
    private let tls: TLSContext
    private let group: EventLoopGroup
    private var channel: Channel?

    public init(address: TrackerAddress, tls: TLSContext, group: EventLoopGroup) {
        self.address = address
        self.tls = tls
        self.group = group
    }

    /// Sends one request and waits for its answer.
    public func send(_ request: TrackerRequest) async throws -> TrackerResponse {
        do {
            let channel = try await connection()
            return try await channel.eventLoop.flatSubmit { () -> EventLoopFuture<TrackerResponse> in
                let answer = channel.eventLoop.makePromise(of: TrackerResponse.self)
                do {
                    try channel.pipeline.syncOperations.handler(type: ResponseCollector.self).expect(answer)
                } catch {
                    answer.fail(WireError.closed)
                    return answer.futureResult
                }
                channel.writeAndFlush(channel.allocator.buffer(string: request.line + "\n"), promise: nil)
                return answer.futureResult
            }.get()
        } catch {
            close()
            throw TrackerUnreachable(tracker: address, reason: "\(error)")
        }
    }

    /// Closes the connection (a later request opens a new one).
    public func close() {
        channel?.close(promise: nil)
        channel = nil
    }

    private func connection() async throws -> Channel {
        if let channel, channel.isActive { return channel }
        let host = address.host.hasPrefix("[") ? String(address.host.dropFirst().dropLast()) : address.host
        let tls = self.tls
        let channel = try await ClientBootstrap(group: group)
            .connectTimeout(.seconds(5))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        TLSHandler(context: tls, side: .client(dialedHost: host)),
                        ByteToMessageHandler(LineFrameDecoder(maximumLength: 64 * 1024)),
                        ResponseCollector(),
                    ])
                }
            }
            .connect(host: host, port: Int(address.port)).get()
        self.channel = channel
        return channel
    }
}

/// Matches answer lines to the requests waiting for them, in order.
final class ResponseCollector: ChannelInboundHandler {
    typealias InboundIn = String

    private var waiting: [EventLoopPromise<TrackerResponse>] = []
    private var reader = TrackerResponseReader()
    private var failure: Error?

    func expect(_ promise: EventLoopPromise<TrackerResponse>) {
        if let failure {
            promise.fail(failure)
        } else {
            waiting.append(promise)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        do {
            guard let response = try reader.consume(unwrapInboundIn(data)) else { return }
            guard !waiting.isEmpty else { throw WireError.malformed("an answer nobody asked for") }
            waiting.removeFirst().succeed(response)
        } catch {
            fail(error, context: context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        fail(error, context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(WireError.closed, context: context)
        context.fireChannelInactive()
    }

    private func fail(_ error: Error, context: ChannelHandlerContext) {
        if failure == nil { failure = error }
        let pending = waiting
        waiting = []
        for promise in pending { promise.fail(error) }
        context.close(promise: nil)
    }
}
