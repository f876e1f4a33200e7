import Foundation
import NIOCore
import NIOPosix
import PKI
import PKITesting
import TLS

/// Measures the TLS layer: bulk throughput of an engine pair in memory (the reference), the same
/// through the NIO handler over loopback, and new mutual handshakes per second against one server.
/// Arguments: megabytes to move (default 1024), seconds for the handshake test (default 5), and
/// optionally one backend to measure (default: every backend in the build).
@main
struct TLSBenchmark {
    static func main() throws {
        let arguments = CommandLine.arguments.dropFirst().compactMap { Int($0) }
        let megabytes = arguments.first ?? 1024
        let handshakeSeconds = arguments.dropFirst().first ?? 5
        let backends = CommandLine.arguments.compactMap(TLSBackend.init(rawValue:))
        let bytes = megabytes * 1024 * 1024
        let ca = try TestAuthority()
        try ca.identity(.tracker(name: "server", dnsNames: [], ipAddresses: ["127.0.0.1"], days: 30))
        try ca.peer("client")
        let trust = TrustSource(try ca.trust())
        func context(_ name: String, _ role: Role, _ backend: TLSBackend) throws -> TLSContext {
            try backend.makeContext(TLSConfiguration(identity: SigningIdentity.load(named: name, from: ca.layout), trust: trust, peerRole: role))
        }
        print("TLS 1.3, ECDSA P-256 certificates, \(megabytes) MiB per transfer, \(ProcessInfo.processInfo.activeProcessorCount) cores")
        for backend in backends.isEmpty ? TLSBackend.available : backends {
            let client = try context("client", .tracker, backend)
            let server = try context("server", .peer, backend)
            let memory = try inMemoryThroughput(client: client, server: server, bytes: bytes)
            let loopback = try loopbackThroughput(client: client, server: server, bytes: bytes)
            let memoryHandshakes = try inMemoryHandshakeRate(client: client, server: server, seconds: handshakeSeconds)
            let handshakes = try handshakeRate(client: client, server: server, seconds: handshakeSeconds)
            print("""
                \(backend): bulk: in-memory engine pair \(format(memory)) MB/s (one thread); NIO over loopback \(format(loopback)) MB/s \
                (\(format(loopback / memory * 100))% of in-memory)
                \(backend): new mutual handshakes: in-memory engine pair \(format(memoryHandshakes))/s (one thread, both sides); \
                NIO over loopback \(format(handshakes))/s against one server (\(format(handshakes / memoryHandshakes * 100))% of in-memory)
                """)
            verdict("\(backend): NIO path >= 70% of the in-memory engine pair", loopback / memory >= 0.7)
            verdict("\(backend): one stream over loopback >= 900 MB/s", loopback >= 900)
            verdict("\(backend): >= 2,000 new mutual handshakes/s against one server", handshakes >= 2000)
        }
    }

    static func format(_ value: Double) -> String { String(format: "%.0f", value) }

    static func verdict(_ target: String, _ met: Bool) {
        print("\(met ? "met   " : "MISSED") \(target)")
    }

    /// One thread encrypts 64 KiB writes on the client engine and decrypts them on the server engine.
    static func inMemoryThroughput(client: TLSContext, server: TLSContext, bytes: Int) throws -> Double {
        let clientEngine = try client.makeEngine(side: .client(dialedHost: "127.0.0.1"))
        let serverEngine = try server.makeEngine(side: .server)
        var transfer = [UInt8](repeating: 0, count: 256 * 1024)
        func move(_ from: TLSEngine, _ to: TLSEngine) {
            while from.pendingCiphertext > 0 {
                let count = transfer.withUnsafeMutableBytes { from.drainCiphertext(into: $0) }
                transfer.withUnsafeBytes { to.consumeCiphertext(UnsafeRawBufferPointer(rebasing: $0.prefix(count))) }
            }
        }
        for _ in 0..<10 {
            _ = clientEngine.handshake()
            _ = serverEngine.handshake()
            move(clientEngine, serverEngine)
            move(serverEngine, clientEngine)
        }
        let chunk = [UInt8](repeating: 0x5a, count: 64 * 1024)
        var sink = [UInt8](repeating: 0, count: 64 * 1024)
        var received = 0
        let start = DispatchTime.now()
        while received < bytes {
            _ = chunk.withUnsafeBytes { clientEngine.writePlaintext($0) }
            move(clientEngine, serverEngine)
            while case .complete(let count) = sink.withUnsafeMutableBytes({ serverEngine.readPlaintext(into: $0) }), count > 0 {
                received += count
            }
        }
        return rate(bytes: received, since: start)
    }

    /// One thread runs whole handshakes (both sides) between fresh engine pairs for `seconds`.
    static func inMemoryHandshakeRate(client: TLSContext, server: TLSContext, seconds: Int) throws -> Double {
        var transfer = [UInt8](repeating: 0, count: 64 * 1024)
        func move(_ from: TLSEngine, _ to: TLSEngine) {
            while from.pendingCiphertext > 0 {
                let count = transfer.withUnsafeMutableBytes { from.drainCiphertext(into: $0) }
                transfer.withUnsafeBytes { to.consumeCiphertext(UnsafeRawBufferPointer(rebasing: $0.prefix(count))) }
            }
        }
        let start = DispatchTime.now()
        let deadline = start.uptimeNanoseconds + UInt64(seconds) * 1_000_000_000
        var completed = 0
        while DispatchTime.now().uptimeNanoseconds < deadline {
            let clientEngine = try client.makeEngine(side: .client(dialedHost: "127.0.0.1"))
            let serverEngine = try server.makeEngine(side: .server)
            var done = (false, false)
            for _ in 0..<10 where !(done.0 && done.1) {
                if case .complete = clientEngine.handshake() { done.0 = true }
                move(clientEngine, serverEngine)
                if case .complete = serverEngine.handshake() { done.1 = true }
                move(serverEngine, clientEngine)
            }
            if done.0 && done.1 { completed += 1 }
        }
        return Double(completed) / (Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9)
    }

    /// A client channel writes `bytes` through the TLS handler to a server channel that counts them.
    static func loopbackThroughput(client: TLSContext, server: TLSContext, bytes: Int) throws -> Double {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        defer { try? group.syncShutdownGracefully() }
        let done = group.next().makePromise(of: Void.self)
        let listener = try ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        TLSHandler(context: server, side: .server), ByteCounter(target: bytes, done: done),
                    ])
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        defer { try? listener.close().wait() }
        let connected = group.next().makePromise(of: Void.self)
        let channel = try ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        TLSHandler(context: client, side: .client(dialedHost: "127.0.0.1")), HandshakeWaiter(promise: connected),
                    ])
                }
            }
            .connect(host: "127.0.0.1", port: listener.localAddress!.port!).wait()
        defer { try? channel.close().wait() }
        try connected.futureResult.wait()
        let start = DispatchTime.now()
        let chunk = channel.allocator.buffer(repeating: 0x5a, count: 256 * 1024)
        var sent = 0
        while sent < bytes {
            // Keep a bounded number of writes in flight: the channel's backpressure paces us.
            var batch: [EventLoopFuture<Void>] = []
            for _ in 0..<16 where sent < bytes {
                batch.append(channel.write(chunk))
                sent += chunk.readableBytes
            }
            channel.flush()
            try EventLoopFuture.andAllSucceed(batch, on: channel.eventLoop).wait()
        }
        try done.futureResult.wait()
        return rate(bytes: sent, since: start)
    }

    /// New connections (connect, mutual handshake, close) for `seconds`, `concurrency` at a time.
    static func handshakeRate(client: TLSContext, server: TLSContext, seconds: Int, concurrency: Int = 32) throws -> Double {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        defer { try? group.syncShutdownGracefully() }
        let listener = try ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(TLSHandler(context: server, side: .server))
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
        defer { try? listener.close().wait() }
        let port = listener.localAddress!.port!
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(seconds) * 1_000_000_000
        let start = DispatchTime.now()
        var completed = 0
        while DispatchTime.now().uptimeNanoseconds < deadline, completed < 10_000_000 {
            let attempts = (0..<concurrency).map { _ in
                let promise = group.next().makePromise(of: Void.self)
                let channel = ClientBootstrap(group: group)
                    .channelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandlers([
                                TLSHandler(context: client, side: .client(dialedHost: "127.0.0.1")), HandshakeWaiter(promise: promise),
                            ])
                        }
                    }
                    .connect(host: "127.0.0.1", port: port)
                return channel.flatMap { channel in promise.futureResult.flatMap { channel.close() } }
            }
            try EventLoopFuture.andAllSucceed(attempts, on: group.next()).wait()
            completed += attempts.count
        }
        return Double(completed) / (Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9)
    }

    static func rate(bytes: Int, since start: DispatchTime) -> Double {
        Double(bytes) / 1e6 / (Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9)
    }
}

/// Counts plaintext bytes and completes a promise once `target` have arrived.
final class ByteCounter: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    private let target: Int
    private let done: EventLoopPromise<Void>
    private var count = 0

    init(target: Int, done: EventLoopPromise<Void>) {
        self.target = target
        self.done = done
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        count += unwrapInboundIn(data).readableBytes
        if count >= target { done.succeed(()) }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        done.fail(error)
    }
}

/// Completes a promise when the TLS handshake completes (or fails).
final class HandshakeWaiter: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    private let promise: EventLoopPromise<Void>

    init(promise: EventLoopPromise<Void>) {
        self.promise = promise
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSEvent.handshakeCompleted? = event as? TLSEvent { promise.succeed(()) }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        promise.fail(error)
    }
}
