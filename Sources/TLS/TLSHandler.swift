import NIOCore
import PKI
import Telemetry

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

    /// Plaintext is encrypted and decrypted in pieces of this size: its ciphertext (four records
    /// with their headers and tags) still fits a 64 KiB buffer, which the allocator serves from
    /// its heap instead of mapping and clearing fresh pages for every write.
    static let chunkSize = 64 * 1024 - 128
    /// Largest buffer of ciphertext handed to the channel in one write.
    static let maximumWriteSize = 64 * 1024

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

    /// A handler with a fresh engine from `context`, using the context's handshake timeout.
    public convenience init(context: TLSContext, side: TLSSide) throws(TLSError) {
        self.init(engine: try context.makeEngine(side: side), handshakeTimeout: .seconds(context.configuration.handshakeTimeoutSeconds))
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { startHandshake(context: context) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        context.fireChannelActive()
        startHandshake(context: context)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        let previous = state
        state = .closed
        timeout?.cancel()
        failHeldWrites(ChannelError.ioOnClosedChannel)
        switch previous {
        case .idle, .handshaking:
            let error = TLSError(.closedDuringHandshake, "the connection closed during the TLS handshake")
            Self.count(error)
            context.fireErrorCaught(error)
        case .active:
            // Neither side closed with close_notify: an attacker may have cut the stream short.
            context.fireErrorCaught(TLSError(.uncleanShutdown, "the connection ended without a TLS close_notify; the last data received may be incomplete"))
        case .closed:
            break
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
            CounterMetric.handshakes.increment("ok", "none")
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

    /// Decrypts everything the engine can, handing the application buffers of up to ``chunkSize``
    /// (several records each) until the engine needs more bytes, the other side closes, or TLS fails.
    private func deliverPlaintext(context: ChannelHandlerContext) {
        while state == .active {
            var plaintext = context.channel.allocator.buffer(capacity: Self.chunkSize)
            var stop: TLSStep<Int>?
            while stop == nil, plaintext.readableBytes < Self.chunkSize {
                let room = Self.chunkSize - plaintext.readableBytes
                var step: TLSStep<Int> = .incomplete
                plaintext.writeWithUnsafeMutableBytes(minimumWritableBytes: room) { space in
                    step = engine.readPlaintext(into: UnsafeMutableRawBufferPointer(rebasing: space.prefix(room)))
                    if case .complete(let count) = step { return count }
                    return 0
                }
                if case .complete(let count) = step, count > 0 { continue }
                stop = step
            }
            if plaintext.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(plaintext)) }
            switch stop {
            case nil:
                continue
            case .incomplete?:
                return
            case .complete?:
                // The other side sent close_notify: answer it and close.
                close(context: context, mode: .all, promise: nil)
                return
            case .failed(let error)?:
                fail(error, context: context)
                return
            }
        }
    }

    private func encrypt(_ buffer: ByteBuffer, context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        var remaining = buffer
        repeat {
            // Encrypt and send piece by piece: the engine's buffer and each outgoing buffer stay
            // small (and are reused by the allocator) whatever the size of the application's write.
            let chunk = remaining.readSlice(length: min(Self.chunkSize, remaining.readableBytes))!
            let step = chunk.withUnsafeReadableBytes { engine.writePlaintext($0) }
            if case .failed(let error) = step {
                promise?.fail(error)
                fail(error, context: context)
                return
            }
            sendCiphertext(context: context, promise: remaining.readableBytes == 0 ? promise : nil)
        } while remaining.readableBytes > 0
    }

    /// Writes (without flushing) whatever ciphertext the engine holds, in buffers of at most
    /// 64 KiB; the promise completes with the last write. Returns whether there was any.
    @discardableResult
    private func sendCiphertext(context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) -> Bool {
        guard engine.pendingCiphertext > 0 else {
            promise?.succeed(())
            return false
        }
        while case let pending = engine.pendingCiphertext, pending > 0 {
            let count = min(pending, Self.maximumWriteSize)
            var buffer = context.channel.allocator.buffer(capacity: count)
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { space in
                engine.drainCiphertext(into: UnsafeMutableRawBufferPointer(rebasing: space.prefix(count)))
            }
            context.write(wrapOutboundOut(buffer), promise: engine.pendingCiphertext == 0 ? promise : nil)
        }
        return true
    }

    private func fail(_ error: TLSError, context: ChannelHandlerContext) {
        guard state != .closed else { return }
        if state == .handshaking { Self.count(error) }
        // Send the alert the engine queued (it tells the other side why), then close.
        sendCiphertext(context: context, promise: nil)
        context.flush()
        state = .closed
        timeout?.cancel()
        failHeldWrites(error)
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }

    /// Counts a handshake that did not complete: refused over a certificate or the protocol
    /// version (by the validation code when there is one), or failed otherwise.
    private static func count(_ error: TLSError) {
        let refusals: Set<TLSError.Code> = [.peerCertificateRefused, .noPeerCertificate, .ourCertificateRefused, .nameMismatch, .protocolVersion]
        let reason = error.validation?.code.description ?? error.code.description
        CounterMetric.handshakes.increment(refusals.contains(error.code) ? "refused" : "failed", reason)
    }

    private func failHeldWrites(_ error: Error) {
        let writes = heldWrites
        heldWrites = []
        for (_, promise) in writes { promise?.fail(error) }
    }
}

@available(*, unavailable)
extension TLSHandler: Sendable {}
