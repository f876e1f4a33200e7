import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus

/// A small HTTP/1.1 server for Prometheus: `GET /metrics` answers the registry in the text
/// exposition format, any other path 404 and any other method 405. It is bounded: a few
/// connections at once, a request of at most ``maximumRequestBytes``, one answer per connection,
/// and an idle connection is closed after ``idleTimeout``. It serves plain HTTP, so bind it to
/// loopback or a private network.
public final class MetricsEndpoint: Sendable {
    /// The one path served.
    public static let path = "/metrics"
    /// The Prometheus text exposition format.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"
    /// Bytes one connection may send (the request line and headers); more closes it.
    public static let maximumRequestBytes = 8 * 1024
    /// Connections served at once; more are closed at once.
    public static let maximumConnections = 16
    /// A connection that sends nothing for this long is closed.
    public static let idleTimeout = TimeAmount.seconds(10)

    private let registry: PrometheusCollectorRegistry
    private let beforeScrape: @Sendable () -> Void
    private let channel = NIOLockedValueBox<Channel?>(nil)
    private let connectionCount = NIOLockedValueBox(0)

    /// Serves `registry`; `beforeScrape` runs before each answer, to set the gauges read then.
    public init(registry: PrometheusCollectorRegistry, beforeScrape: @escaping @Sendable () -> Void = {}) {
        self.registry = registry
        self.beforeScrape = beforeScrape
    }

    /// The endpoint could not listen where it was asked to (the address is taken or not ours).
    public struct StartError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Binds and serves; returns the bound address (port 0 picks a free one).
    public func start(host: String, port: Int, group: EventLoopGroup) throws(StartError) -> SocketAddress {
        let bound: Channel
        do {
            bound = try ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { [self] child in
                    child.eventLoop.makeCompletedFuture { try setUp(child) }
                }
                .bind(host: host, port: port).wait()
        } catch {
            throw StartError(description: "cannot serve metrics on \(host):\(port): \(error)")
        }
        channel.withLockedValue { $0 = bound }
        return bound.localAddress!
    }

    /// Stops accepting; connections open finish their one answer.
    public func stop() {
        channel.withLockedValue { $0 }?.close(promise: nil)
    }

    /// The registry in the text exposition format, after `beforeScrape`.
    func scrape() -> [UInt8] {
        beforeScrape()
        return registry.emitToBuffer()
    }

    private func setUp(_ child: Channel) throws {
        let admitted = connectionCount.withLockedValue { count -> Bool in
            guard count < Self.maximumConnections else { return false }
            count += 1
            return true
        }
        guard admitted else {
            child.close(promise: nil)
            return
        }
        child.closeFuture.whenComplete { [self] _ in connectionCount.withLockedValue { $0 -= 1 } }
        try child.pipeline.syncOperations.addHandlers([
            RequestSizeLimit(maximum: Self.maximumRequestBytes),
            IdleStateHandler(readTimeout: Self.idleTimeout),
            HTTPResponseEncoder(),
            ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes)),
            HTTPServerProtocolErrorHandler(),
            MetricsRequestHandler(endpoint: self),
        ])
    }

    /// The status of a request for `uri` with `method`: 200 only for GET or HEAD of ``path``
    /// (with or without a query).
    static func status(method: HTTPMethod, uri: String) -> HTTPResponseStatus {
        let path = uri.prefix { $0 != "?" }
        guard path == Self.path else { return .notFound }
        return method == .GET || method == .HEAD ? .ok : .methodNotAllowed
    }
}

/// Closes a connection that sends more than `maximum` bytes, before the HTTP decoder buffers them.
private final class RequestSizeLimit: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let maximum: Int
    private var received = 0

    init(maximum: Int) {
        self.maximum = maximum
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        received += unwrapInboundIn(data).readableBytes
        guard received <= maximum else {
            context.close(promise: nil)
            return
        }
        context.fireChannelRead(data)
    }
}

/// Answers the one request of a connection, then closes it; closes an idle or broken one.
private final class MetricsRequestHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let endpoint: MetricsEndpoint
    private var request: HTTPRequestHead?
    private var answered = false

    init(endpoint: MetricsEndpoint) {
        self.endpoint = endpoint
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): request = head
        case .body: break
        case .end:
            guard let request, !answered else { return }
            answered = true
            respond(to: request, context: context)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    /// A request that is not HTTP (answered 400 before this) or a broken connection: close it.
    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    private func respond(to request: HTTPRequestHead, context: ChannelHandlerContext) {
        let status = MetricsEndpoint.status(method: request.method, uri: request.uri)
        let body: EventLoopFuture<[UInt8]>
        switch status {
        case .ok:
            // Off the event loop, on NIO's blocking-work threads: the gauges set at scrape time
            // may look at files.
            body = NIOThreadPool.singleton.runIfActive(eventLoop: context.eventLoop) { [endpoint] in endpoint.scrape() }
        case .methodNotAllowed: body = context.eventLoop.makeSucceededFuture(Array("only GET \(MetricsEndpoint.path)\n".utf8))
        default: body = context.eventLoop.makeSucceededFuture(Array("not found; metrics are at \(MetricsEndpoint.path)\n".utf8))
        }
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        body.whenSuccess { bytes in
            let (handler, context) = bound.value
            handler.send(status, bytes, to: request, context: context)
        }
    }

    private func send(_ status: HTTPResponseStatus, _ body: [UInt8], to request: HTTPRequestHead, context: ChannelHandlerContext) {
        var headers = HTTPHeaders([("Connection", "close"), ("Content-Length", "\(body.count)")])
        headers.add(name: "Content-Type", value: status == .ok ? MetricsEndpoint.contentType : "text/plain; charset=utf-8")
        if status == .methodNotAllowed { headers.add(name: "Allow", value: "GET, HEAD") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: status, headers: headers))), promise: nil)
        if request.method != .HEAD { context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil) }
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in bound.value.close(promise: nil) }
    }
}
