import NIOCore
import PKI
import Pieces
import TLS
import Wire

/// One block of a piece, as requested from a holder.
struct Block: Equatable {
    let piece: Int
    let offset: Int
    let length: Int
}

/// One download connection to a holder: it proves the holder's identity, names the file, learns
/// what the holder has, and hands each frame to the ``Swarm`` it belongs to. It lives on the
/// swarm's event loop, so the swarm reads and changes its state directly.
final class SwarmConnection: ChannelInboundHandler {
    typealias InboundIn = PeerFrame
    typealias OutboundOut = PeerFrame

    let id: Int
    let holder: HolderRecord
    private let swarm: Swarm
    private var context: ChannelHandlerContext?

    /// Who the holder proved to be (known once the handshake completed and matched the tracker's record).
    var identity: VerifiedIdentity?
    /// What the holder has (known once its bitfield arrived).
    var bits: Bitfield?
    /// Blocks chosen for this connection and not yet requested, in order.
    var queue: [Block] = []
    /// Blocks requested and not yet received, in the order the holder answers them.
    var outstanding: [Block] = []
    /// Pieces this connection is fetching (queued, requested, assembling or being verified).
    var assigned: Set<Int> = []
    /// The blocks received so far of the piece being assembled.
    var assembling: (piece: Int, data: ByteBuffer)?
    /// When the holder last answered (or when the first outstanding request went out).
    var lastHeard = NIODeadline.now()
    /// Why the connection ended, for the log.
    var endReason: String?

    init(id: Int, holder: HolderRecord, swarm: Swarm) {
        self.id = id
        self.holder = holder
        self.swarm = swarm
    }

    func channelActive(context: ChannelHandlerContext) {
        self.context = context
        context.fireChannelActive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSEvent.handshakeCompleted(let identity)? = event as? TLSEvent {
            swarm.connection(self, provedIdentity: identity)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        swarm.connection(self, received: unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.context = nil
        swarm.connectionEnded(id)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if endReason == nil { endReason = ConnectionProblem.cause(of: error, timeout: TLSConfiguration.defaultHandshakeTimeoutSeconds).predicate }
        context.close(promise: nil)
    }

    /// Queues frames; `flush` sends them.
    func send(_ frame: PeerFrame) {
        context?.write(wrapOutboundOut(frame), promise: nil)
    }

    func flush() {
        context?.flush()
    }

    /// Ends the connection, remembering why.
    func close(because reason: String) {
        if endReason == nil { endReason = reason }
        context?.close(promise: nil)
    }
}
