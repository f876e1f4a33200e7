import Foundation
import MTorrentFormat
import NIOCore
import NIOPosix
import PKI
import PKITesting
import TLS
import Testing
import Wire

/// A client of a peer's server that sends whatever frames a test asks for over mutual TLS and
/// records what comes back; it can stop reading to play a slow reader.
final class RawPeerClient: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = PeerFrame
    typealias OutboundOut = PeerFrame

    private(set) var channel: Channel!
    /// Frames received (touched on the channel's event loop only).
    private var received: [PeerFrame] = []

    static func connect(to address: String, as name: String, ca: TestAuthority) async throws -> RawPeerClient {
        let identity = try SigningIdentity.load(named: name, from: ca.layout)
        let tls = try TLSBackend.openssl.makeContext(TLSConfiguration(identity: identity, trust: TrustSource(try ca.trust()), peerRole: .peer))
        let target = try #require(TrackerAddress(address))
        let client = RawPeerClient()
        client.channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        try TLSHandler(context: tls, side: .client(dialedHost: target.host)), ByteToMessageHandler(PeerFrameDecoder()),
                        MessageToByteHandler(PeerFrameEncoder()), client,
                    ])
                }
            }
            .connect(host: target.host, port: Int(target.port)).get()
        return client
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        received.append(unwrapInboundIn(data))
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    /// Sends frames without waiting for them to leave.
    func send(_ frames: [PeerFrame]) {
        let channel = self.channel!
        channel.eventLoop.execute {
            for frame in frames { channel.write(NIOAny(frame), promise: nil) }
            channel.flush()
        }
    }

    /// The frames received so far, once `condition` holds for them or after `seconds`.
    func frames(within seconds: Double = 10, until condition: @escaping @Sendable ([PeerFrame]) -> Bool = { _ in true }) async throws -> [PeerFrame] {
        let deadline = Date() + seconds
        while true {
            let frames = try await channel.eventLoop.submit { self.received }.get()
            if condition(frames) || Date() > deadline { return frames }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Stops reading from the socket: the server's writes back up.
    func stopReading() async throws {
        try await channel.setOption(ChannelOptions.autoRead, value: false).get()
    }
}

/// Waits until `channel` is closed or `seconds` pass; true if it closed.
func closes(_ channel: Channel, within seconds: Double) async -> Bool {
    let deadline = Date() + seconds
    while Date() < deadline {
        if (try? await channel.eventLoop.submit({ channel.isActive }).get()) == false { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return false
}
