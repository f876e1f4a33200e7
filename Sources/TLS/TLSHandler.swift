import NIOCore
import PKI

/// What the handler tells the handlers after it about the connection's security.
public enum TLSEvent: Sendable {
    /// The handshake finished; the other side is this verified identity.
    case handshakeCompleted(VerifiedIdentity)
}

/// Drives any ``TLSEngine`` inside a SwiftNIO channel: handshake on activation (with a timeout),
/// decryption of what arrives, encryption of what the application writes (held until the
/// handshake is done), close_notify on close, and every TLS failure turned into a ``TLSError``
/// fired down the pipeline followed by a close. Reads are passed through only as the
/// application asks for them, so a slow reader slows the sender instead of filling memory.
public final class TLSHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private enum State {
        case idle
        case handshaking
        case active
        case closed
    }

    /// Plaintext is encrypted and decrypted in pieces of this size.
    static let chunkSize = 64 * 1024

    private let engine: TLSEngine
    private let handshakeTimeout: TimeAmount
    private var state = State.idle
    private var timeout: Scheduled<Void>?
    private var heldWrites: [(ByteBuffer, EventLoopPromise<Void>?)] = []
    private var heldFlush = false

    public init(engine: TLSEngine, handshakeTimeout: TimeAmount = .seconds(TLSConfiguration.defaultHandshakeTimeoutSeconds)) {
        self.engine = engine
        self.handshakeTimeout = handshakeTimeout
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { startHandshake(context: context) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        context.fireChannelActive()
        startHandshake(context: context)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        let wasHandshaking = state == .handshaking || state == .idle
        state = .closed
        timeout?.cancel()
        failHeldWrites(ChannelError.ioOnClosedChannel)
        if wasHandshaking {
            context.fireErrorCaught(TLSError(.closedDuringHandshake, "the connection closed during the TLS handshake"))
        }
        context.fireChannelInactive()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        guard state != .closed else { return }
        buffer.withUnsafeReadableBytes { engine.consumeCiphertext($0) }
        if state == .handshaking { continueHandshake(context: context) }
        if state == .active { deliverPlaintext(context: context) }
        // Reading can produce handshake messages, key updates or alerts: send them now.
        if sendCiphertext(context: context, promise: nil) { context.flush() }
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        context.fireChannelReadComplete()
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let buffer = unwrapOutboundIn(data)
        switch state {
        case .idle, .handshaking:
            heldWrites.append((buffer, promise))
        case .active:
            encrypt(buffer, context: context, promise: promise)
        case .closed:
            promise?.fail(ChannelError.ioOnClosedChannel)
        }
    }

    public func flush(context: ChannelHandlerContext) {
        if state == .active {
            context.flush()
        } else {
            heldFlush = true
        }
    }

    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if state == .active, mode == .all {
            engine.shutdown()
            sendCiphertext(context: context, promise: nil)
            context.flush()
        }
        state = .closed
        timeout?.cancel()
        context.close(mode: mode, promise: promise)
    }

    private func startHandshake(context: ChannelHandlerContext) {
        guard state == .idle else { return }
        state = .handshaking
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timeout = context.eventLoop.scheduleTask(in: handshakeTimeout) {
            let (handler, context) = bound.value
            guard handler.state == .handshaking else { return }
            let seconds = handler.handshakeTimeout.nanoseconds / 1_000_000_000
            handler.fail(TLSError(.handshakeTimeout, "the TLS handshake did not finish within \(seconds) s"), context: context)
        }
        continueHandshake(context: context)
        sendCiphertext(context: context, promise: nil)
        context.flush()
    }

    private func continueHandshake(context: ChannelHandlerContext) {
        switch engine.handshake() {
        case .incomplete:
            return
        case .failed(let error):
            fail(error, context: context)
        case .complete(let identity):
            state = .active
            timeout?.cancel()
            context.fireUserInboundEventTriggered(TLSEvent.handshakeCompleted(identity))
            let writes = heldWrites
            heldWrites = []
            for (buffer, promise) in writes { encrypt(buffer, context: context, promise: promise) }
            if heldFlush || !writes.isEmpty {
                heldFlush = false
                context.flush()
            }
        }
    }

    private func deliverPlaintext(context: ChannelHandlerContext) {
        while state == .active {
            var plaintext = context.channel.allocator.buffer(capacity: Self.chunkSize)
            var step: TLSStep<Int> = .incomplete
            plaintext.writeWithUnsafeMutableBytes(minimumWritableBytes: Self.chunkSize) { space in
                step = engine.readPlaintext(into: UnsafeMutableRawBufferPointer(rebasing: space.prefix(Self.chunkSize)))
                if case .complete(let count) = step { return count }
                return 0
            }
            switch step {
            case .complete(0):
                // The other side sent close_notify: answer it and close.
                close(context: context, mode: .all, promise: nil)
                return
            case .complete:
                context.fireChannelRead(wrapInboundOut(plaintext))
            case .incomplete:
                return
            case .failed(let error):
                fail(error, context: context)
                return
            }
        }
    }

    private func encrypt(_ buffer: ByteBuffer, context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        var remaining = buffer
        while remaining.readableBytes > 0 {
            let chunk = remaining.readSlice(length: min(Self.chunkSize, remaining.readableBytes))!
            let step = chunk.withUnsafeReadableBytes { engine.writePlaintext($0) }
            if case .failed(let error) = step {
                promise?.fail(error)
                fail(error, context: context)
                return
            }
        }
        sendCiphertext(context: context, promise: promise)
    }

    /// Writes (without flushing) whatever ciphertext the engine holds; the promise completes with
    /// that write. Returns whether there was any.
    @discardableResult
    private func sendCiphertext(context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) -> Bool {
        let pending = engine.pendingCiphertext
        guard pending > 0 else {
            promise?.succeed(())
            return false
        }
        var buffer = context.channel.allocator.buffer(capacity: pending)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: pending) { space in
            engine.drainCiphertext(into: UnsafeMutableRawBufferPointer(rebasing: space.prefix(pending)))
        }
        context.write(wrapOutboundOut(buffer), promise: promise)
        return true
    }

    private func fail(_ error: TLSError, context: ChannelHandlerContext) {
        guard state != .closed else { return }
        // Send the alert the engine queued (it tells the other side why), then close.
        sendCiphertext(context: context, promise: nil)
        context.flush()
        state = .closed
        timeout?.cancel()
        failHeldWrites(error)
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }

    private func failHeldWrites(_ error: Error) {
        let writes = heldWrites
        heldWrites = []
        for (_, promise) in writes { promise?.fail(error) }
    }
}

@available(*, unavailable)
extension TLSHandler: Sendable {}
