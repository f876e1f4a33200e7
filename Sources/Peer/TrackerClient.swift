import MTorrentFormat
import NIOCore
import NIOPosix
import TLS
import Wire

/// Why a tracker could not be asked.
public struct TrackerUnreachable: Error, CustomStringConvertible {
    public let tracker: TrackerAddress
    public let problem: ConnectionProblem

    public var description: String { problem.sentence(about: "tracker \(tracker)") }
}

/// A persistent mutual-TLS connection to one tracker, opened on first use and reopened after a
/// failure; requests are answered in order. Every request has a deadline that covers connecting,
/// the handshake and the answer: a tracker that never answers costs a command that long and no
/// longer, and the connection is then dropped (a late answer would be taken for the next one's).
/// All state lives on one event loop.
public final class TrackerClient: Sendable {
    public let address: TrackerAddress
    /// Seconds one request may take in all.
    public let timeoutSeconds: Int64
    private let tls: TLSContext
    private let loop: EventLoop
    private let connection: NIOLoopBoundBox<Connection>

    /// The connection on the loop: open, being opened, or none.
    private enum Connection: Sendable {
        case none
        case opening(EventLoopFuture<Channel>)
        case open(Channel)
    }

    public static let defaultTimeoutSeconds: Int64 = 5

    public init(address: TrackerAddress, tls: TLSContext, group: EventLoopGroup, timeoutSeconds: Int64 = defaultTimeoutSeconds) {
        self.address = address
        self.tls = tls
        self.timeoutSeconds = timeoutSeconds
        loop = group.next()
        connection = .makeBoxSendingValue(.none, eventLoop: loop)
    }

    /// Sends one request and waits for its answer, at most ``timeoutSeconds``.
    public func send(_ request: TrackerRequest) async throws(TrackerUnreachable) -> TrackerResponse {
        do {
            return try await loop.flatSubmit { self.sendOnLoop(request) }.get()
        } catch {
            throw TrackerUnreachable(tracker: address, problem: ConnectionProblem.cause(of: error, timeout: timeoutSeconds))
        }
    }

    /// Closes the connection (a later request opens a new one).
    public func close() {
        loop.execute { self.dropConnection() }
    }

    private func sendOnLoop(_ request: TrackerRequest) -> EventLoopFuture<TrackerResponse> {
        let answer = loop.makePromise(of: TrackerResponse.self)
        let timeout = timeoutSeconds
        let deadline = loop.scheduleTask(in: .seconds(timeout)) { [self] in
            dropConnection()
            answer.fail(ConnectionProblem.timedOut(seconds: timeout))
        }
        answer.futureResult.whenComplete { _ in deadline.cancel() }
        openChannel().whenComplete { result in
            switch result {
            case .failure(let error):
                answer.fail(error)
            case .success(let channel):
                do {
                    try channel.pipeline.syncOperations.handler(type: ResponseCollector.self).expect(answer)
                } catch {
                    answer.fail(WireError.closed)
                    return
                }
                channel.writeAndFlush(channel.allocator.buffer(string: request.line + "\n"), promise: nil)
            }
        }
        return answer.futureResult
    }

    private func openChannel() -> EventLoopFuture<Channel> {
        switch connection.value {
        case .open(let channel) where channel.isActive:
            return loop.makeSucceededFuture(channel)
        case .opening(let future):
            return future
        case .open, .none:
            break
        }
        let host = address.host.hasPrefix("[") ? String(address.host.dropFirst().dropLast()) : address.host
        let tls = self.tls
        let opening = ClientBootstrap(group: loop)
            .connectTimeout(.seconds(timeoutSeconds))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        TLSHandler(context: tls, side: .client(dialedHost: host)),
                        ByteToMessageHandler(LineFrameDecoder(maximumLength: TrackerResponse.maximumLineLength)),
                        ResponseCollector(),
                    ])
                }
            }
            .connect(host: host, port: Int(address.port))
            .hop(to: loop)
        connection.value = .opening(opening)
        opening.whenComplete { [self] result in
            guard case .opening(let current) = connection.value, current === opening else {
                if case .success(let channel) = result { channel.close(promise: nil) }
                return
            }
            switch result {
            case .success(let channel): connection.value = .open(channel)
            case .failure: connection.value = .none
            }
        }
        return opening
    }

    private func dropConnection() {
        if case .open(let channel) = connection.value { channel.close(promise: nil) }
        connection.value = .none
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
        for promise in pending { promise.fail(failure ?? error) }
        context.close(promise: nil)
    }
}
