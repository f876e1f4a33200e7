import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PKI
import TLS
import Testing

/// Records how a connection's handshake ended, echoes what a server receives, and collects what
/// a client receives.
final class Recorder: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let outcome: EventLoopPromise<VerifiedIdentity>
    /// Completes when the connection closes, with the last error seen (a TLS 1.3 client learns
    /// that the server refused its certificate only after its own handshake completed).
    let closed: EventLoopPromise<Error?>
    let echo: Bool
    private(set) var received = ByteBuffer()
    private var lastError: Error?

    init(eventLoop: EventLoop, echo: Bool) {
        outcome = eventLoop.makePromise()
        closed = eventLoop.makePromise()
        self.echo = echo
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSEvent.handshakeCompleted(let identity)? = event as? TLSEvent { outcome.succeed(identity) }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if echo {
            context.writeAndFlush(wrapOutboundOut(bytes), promise: nil)
        } else {
            received.writeBuffer(&bytes)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        lastError = error
        outcome.fail(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        outcome.fail(TLSError(.closedDuringHandshake, "closed"))
        closed.succeed(lastError)
        context.fireChannelInactive()
    }
}

/// A TLS echo server on 127.0.0.1 with an ephemeral port; it records every connection's outcome.
final class LoopbackServer: Sendable {
    let channel: Channel
    private let recorders = NIOLockedValueBox<[Recorder]>([])

    init(group: MultiThreadedEventLoopGroup, context: TLSContext, handshakeTimeout: TimeAmount = .seconds(10)) throws {
        let recorders = self.recorders
        channel = try ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { child in
                child.eventLoop.makeCompletedFuture {
                    let recorder = Recorder(eventLoop: child.eventLoop, echo: true)
                    let engine = try context.makeEngine(side: .server)
                    try child.pipeline.syncOperations.addHandlers([TLSHandler(engine: engine, handshakeTimeout: handshakeTimeout), recorder])
                    recorders.withLockedValue { $0.append(recorder) }
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
    }

    var port: Int { channel.localAddress!.port! }

    /// The outcome of the `index`-th accepted connection, waiting at most ten seconds for it to exist.
    func outcome(_ index: Int) throws -> Result<VerifiedIdentity, Error> {
        let deadline = Date() + 10
        while Date() < deadline {
            if let recorder = recorders.withLockedValue({ $0.count > index ? $0[index] : nil }) {
                do {
                    return .success(try recorder.outcome.futureResult.wait())
                } catch {
                    return .failure(error)
                }
            }
            usleep(10_000)
        }
        throw TLSError(.protocolFailure, "no connection arrived")
    }

    /// The last error of the `index`-th connection once it has closed (nil for a clean close).
    func closedError(_ index: Int) throws -> Error? {
        let recorder = try #require(recorders.withLockedValue { $0.count > index ? $0[index] : nil })
        return try recorder.closed.futureResult.wait()
    }

    func close() throws {
        try channel.close().wait()
    }
}

/// Connects a TLS client to 127.0.0.1:`port`; returns its channel and recorder.
func connectClient(group: EventLoopGroup, context: TLSContext, port: Int, dialedHost: String = "127.0.0.1") throws -> (Channel, Recorder) {
    let recorderBox = NIOLockedValueBox<Recorder?>(nil)
    let channel = try ClientBootstrap(group: group)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                let recorder = Recorder(eventLoop: channel.eventLoop, echo: false)
                try channel.pipeline.syncOperations.addHandlers([TLSHandler(context: context, side: .client(dialedHost: dialedHost)), recorder])
                recorderBox.withLockedValue { $0 = recorder }
            }
        }
        .connect(host: "127.0.0.1", port: port).wait()
    return (channel, recorderBox.withLockedValue { $0! })
}

/// Runs `openssl s_client` against 127.0.0.1:`port` with extra arguments, for at most ten seconds.
func runOpenSSLClient(port: Int, _ arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["openssl", "s_client", "-connect", "127.0.0.1:\(port)"] + arguments
    let output = Pipe()
    process.standardOutput = output
    process.standardError = output
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let deadline = Date() + 10
    while process.isRunning, Date() < deadline { usleep(10_000) }
    if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    process.waitUntilExit()
    return String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
}
