import Foundation
import Logging
import MTorrentFormat
import NIOCore
import NIOPosix
import PKI
import PKITesting
import Peer
import TLS
import Tracker
import Wire

/// A bounded load generator for the tracker: `GET` requests per second over persistent
/// connections (each keeping a window of requests in flight), and with a new mutual-TLS
/// connection per request. The tracker runs in this process on its own event loops.
/// Arguments: seconds per test (default 5), persistent connections (default 16); or
/// `registry [files] [seconds]` for the registry at scale (``RegistryScale``); or
/// `postgres [files] [seconds]` for the shared registry in PostgreSQL (``PostgresScale``).
@main
struct TrackerBenchmark {
    static func main() async throws {
        switch CommandLine.arguments.dropFirst().first {
        case "registry":
            let numbers = CommandLine.arguments.dropFirst(2).compactMap { Int($0) }
            return try await RegistryScale.run(files: numbers.first ?? 1_000_000, seconds: numbers.dropFirst().first ?? 5)
        case "postgres":
            let numbers = CommandLine.arguments.dropFirst(2).compactMap { Int($0) }
            return try await PostgresScale.run(files: numbers.first ?? 1_000_000, seconds: numbers.dropFirst().first ?? 5)
        case "registry-start":
            return try RegistryScale.start(folder: CommandLine.arguments[2])
        default:
            break
        }
        let arguments = CommandLine.arguments.dropFirst().compactMap { Int($0) }
        let seconds = arguments.first ?? 5
        let connections = arguments.dropFirst().first ?? 16
        let ca = try TestAuthority()
        try ca.identity(.tracker(name: "tracker", dnsNames: [], ipAddresses: ["127.0.0.1"], days: 30))
        try ca.peer("client")
        var logger = Logger(label: "tracker")
        logger.logLevel = .error
        let serverGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let clientGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        // One client certificate makes every request: the per-certificate rate limit is off here,
        // and it may hold more connections than the persistent or the fresh-connection test opens.
        var configuration = TrackerConfiguration(host: "127.0.0.1", port: 0, pki: ca.layout, name: "tracker", aclPath: nil, dataFolder: ca.folder.file("data"))
        configuration.requestsPerSecond = 0
        configuration.maximumConnectionsPerPeer = max(64, connections)
        let server = try TrackerServer(configuration: configuration, logger: logger)
        let port = try server.start(group: serverGroup).port!
        let identity = try SigningIdentity.load(named: "client", from: ca.layout)
        let tls = try TLSBackend.openssl.makeContext(TLSConfiguration(identity: identity, trust: TrustSource(try ca.trust()), peerRole: .tracker))
        let dataPath = ca.folder.file("bench.bin")
        try Data(repeating: 7, count: 1 << 20).write(to: URL(fileURLWithPath: dataPath))
        let torrent = try MTorrent.create(fileAt: dataPath, trackers: [TrackerAddress("127.0.0.1:\(port)")!], identity: identity, trust: ca.trust())
        let file = FileID(bytes: torrent.root)!
        let setup = TrackerClient(address: TrackerAddress("127.0.0.1:\(port)")!, tls: tls, group: clientGroup)
        _ = try await setup.send(.share(file: file, port: 6001, proof: torrent.signedHeader!.bytes))
        setup.close()

        let persistent = try persistentRate(port: port, tls: tls, group: clientGroup, file: file, connections: connections, seconds: seconds)
        let fresh = try await newConnectionRate(port: port, tls: tls, group: clientGroup, file: file, seconds: seconds)
        print(String(format: "tracker GET over %d persistent connections: %.0f requests/s", connections, persistent))
        print(String(format: "tracker GET with a new mutual-TLS connection per request: %.0f requests/s", fresh))
        print("\(persistent >= 50_000 ? "met   " : "MISSED") >= 50,000 GET/s over persistent connections")
        print("\(fresh >= 2_000 ? "met   " : "MISSED") >= 2,000 GET/s with a new connection per request")
        server.stop()
        try await serverGroup.shutdownGracefully()
        try await clientGroup.shutdownGracefully()
    }

    /// Each connection keeps `window` GETs in flight and sends another for every answer.
    static func persistentRate(port: Int, tls: TLSContext, group: EventLoopGroup, file: FileID, connections: Int, seconds: Int) throws -> Double {
        try persistentRate(port: port, tls: tls, group: group, connections: connections, window: 32, seconds: seconds) { _ in
            { TrackerRequest.get(file: file).line + "\n" }
        }
    }

    /// Each connection keeps `window` requests made by `requests(connection)` in flight; connection
    /// `i` presents `identities[i]` if given, else `tls`.
    static func persistentRate(
        port: Int, tls: TLSContext, identities: [TLSContext]? = nil, group: EventLoopGroup, connections: Int, window: Int, seconds: Int,
        requests: (Int) -> @Sendable () -> String
    ) throws -> Double {
        let counters = try (0..<connections).map { index -> (Channel, LoadDriver) in
            let driver = LoadDriver(window: window, next: requests(index))
            let channel = try ClientBootstrap(group: group)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandlers([
                            TLSHandler(context: identities?[index] ?? tls, side: .client(dialedHost: "127.0.0.1")),
                            ByteToMessageHandler(LineFrameDecoder(maximumLength: 4096)),
                            driver,
                        ])
                    }
                }
                .connect(host: "127.0.0.1", port: port).wait()
            return (channel, driver)
        }
        Thread.sleep(forTimeInterval: 0.5)
        let start = counters.map { channel, driver in try! channel.eventLoop.submit { driver.successes }.wait() }.reduce(0, +)
        Thread.sleep(forTimeInterval: TimeInterval(seconds))
        let end = counters.map { channel, driver in try! channel.eventLoop.submit { driver.successes }.wait() }.reduce(0, +)
        for (channel, _) in counters { try channel.close().wait() }
        return Double(end - start) / Double(seconds)
    }

    /// One GET per new connection, 32 connections at a time.
    static func newConnectionRate(port: Int, tls: TLSContext, group: EventLoopGroup, file: FileID, seconds: Int) async throws -> Double {
        let deadline = Date() + TimeInterval(seconds)
        let start = Date()
        var completed = 0
        while Date() < deadline {
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                for _ in 0..<32 {
                    tasks.addTask {
                        let client = TrackerClient(address: TrackerAddress("127.0.0.1:\(port)")!, tls: tls, group: group)
                        defer { client.close() }
                        _ = try await client.send(.get(file: file))
                    }
                }
                try await tasks.waitForAll()
            }
            completed += 32
        }
        return Double(completed) / Date().timeIntervalSince(start)
    }
}

/// Keeps `window` requests in flight on one connection and counts complete answers (and `OK`s).
final class LoadDriver: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = String
    typealias OutboundOut = ByteBuffer
    private let next: @Sendable () -> String
    private let window: Int
    private var reader = TrackerResponseReader()
    private(set) var answers = 0
    private(set) var successes = 0

    init(window: Int, next: @escaping @Sendable () -> String) {
        self.next = next
        self.window = window
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSEvent.handshakeCompleted? = event as? TLSEvent {
            let batch = (0..<window).map { _ in next() }.joined()
            context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: batch)), promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let response = try? reader.consume(unwrapInboundIn(data)) else { return }
        answers += 1
        if case .failure = response {} else { successes += 1 }
        context.write(wrapOutboundOut(context.channel.allocator.buffer(string: next())), promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }
}
