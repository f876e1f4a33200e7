import Foundation
import NIOCore
import NIOPosix
import PKI
import PKITesting
import TLS
import Wire

/// A server at a tracker's address that never serves: it accepts connections and then never
/// starts TLS, or completes the handshake with a valid tracker certificate and then never
/// answers, or answers every request with a line that is not the tracker protocol.
final class MisbehavingTracker {
    enum Behaviour: String, CaseIterable, CustomStringConvertible {
        case noHandshake, silent, garbage
        var description: String { rawValue }
    }

    let address: String
    private let channel: Channel

    /// Serves on a free port of 127.0.0.1 with the tracker certificate `name` of `ca`.
    init(_ behaviour: Behaviour, name: String, ca: TestAuthority) throws {
        let identity = try SigningIdentity.load(named: name, from: ca.layout)
        let tls = try TLSBackend.openssl.makeContext(TLSConfiguration(identity: identity, trust: TrustSource(try ca.trust()), peerRole: .peer))
        channel = try ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let handlers: [ChannelHandler]
                    switch behaviour {
                    case .noHandshake: handlers = [Swallow()]
                    case .silent: handlers = [try TLSHandler(context: tls, side: .server), Swallow()]
                    case .garbage: handlers = [try TLSHandler(context: tls, side: .server), ByteToMessageHandler(LineFrameDecoder(maximumLength: 4096)), Nonsense()]
                    }
                    try channel.pipeline.syncOperations.addHandlers(handlers)
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        address = "127.0.0.1:\(channel.localAddress!.port!)"
    }

    func stop() {
        try? channel.close().wait()
    }

    deinit {
        channel.close(promise: nil)
    }

    /// Reads everything, answers nothing.
    private final class Swallow: ChannelInboundHandler {
        typealias InboundIn = Any

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
    }

    /// Answers every line with a line that is no tracker answer.
    private final class Nonsense: ChannelInboundHandler {
        typealias InboundIn = String
        typealias OutboundOut = ByteBuffer

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: "BANANA 42\n")), promise: nil)
        }
    }
}

/// A port of 127.0.0.1 that nothing listens on now (a tracker can be started there later).
func unusedPort() throws -> Int {
    let channel = try ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).wait()
    let port = channel.localAddress!.port!
    try channel.close().wait()
    return port
}
