import NIOCore
import PKI
import Telemetry
import TLS
import Wire

/// One block of a piece, as requested from a holder.
struct Block: Equatable {
    let piece: Int
    let offset: Int
    let length: Int
}

/// The channel end of one download connection to a holder: it reports the proved identity, each
/// frame and the end of the connection to its ``Swarm``, and sends what the swarm's state machine
/// decides. It lives on the swarm's event loop.
final class SwarmConnection: ChannelInboundHandler {
    typealias InboundIn = PeerFrame
    typealias OutboundOut = PeerFrame

    let id: Int
    private let swarm: Swarm
    private var context: ChannelHandlerContext?
    /// What broke the connection, if something did.
    private var problem: String?

    init(id: Int, swarm: Swarm) {
        self.id = id
        self.swarm = swarm
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSEvent.handshakeCompleted(let identity)? = event as? TLSEvent {
            swarm.handle(.connected(id, identity: identity))
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelActive(context: ChannelHandlerContext) {
        GaugeMetric.peerConnectionsOpen.increment("out")
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        if case .piece(_, _, let bytes) = frame { CounterMetric.peerDownloadedBytes.increment(by: bytes.readableBytes) }
        swarm.handle(.frame(id, frame))
    }

    func channelInactive(context: ChannelHandlerContext) {
        GaugeMetric.peerConnectionsOpen.decrement("out")
        self.context = nil
        swarm.connectionEnded(id, problem: problem)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if problem == nil { problem = ConnectionProblem.cause(of: error, timeout: TLSConfiguration.defaultHandshakeTimeoutSeconds).predicate }
        context.close(promise: nil)
    }

    /// Sends frames and flushes them.
    func send(_ frames: [PeerFrame]) {
        guard let context else { return }
        for frame in frames { context.write(wrapOutboundOut(frame), promise: nil) }
        context.flush()
    }

    func close() {
        context?.close(promise: nil)
    }
}
