import CoreMetrics
import NIOCore
import NIOPosix
import Prometheus
import Telemetry
import Testing

/// The `/metrics` endpoint over real HTTP on 127.0.0.1, and the metrics counting into a registry.
@Suite struct MetricsEndpointTests {
    /// A started endpoint serving a registry with one counter at 3, and its address.
    private static func serve(_ body: (Int) async throws -> Void) async throws {
        let registry = PrometheusCollectorRegistry()
        registry.makeCounter(descriptor: MetricNameDescriptor(metricName: "minitorrent_test", unitName: "total", helpText: "")).increment(by: Int64(3))
        let gauge = registry.makeGauge(descriptor: MetricNameDescriptor(metricName: "minitorrent_test_scrapes", unitName: "", helpText: ""))
        let endpoint = MetricsEndpoint(registry: registry, beforeScrape: { gauge.increment() })
        let address = try endpoint.start(host: "127.0.0.1", port: 0, group: MultiThreadedEventLoopGroup.singleton)
        defer { endpoint.stop() }
        try await body(try #require(address.port))
    }

    @Test func servesTheRegistryInTheTextFormatAtMetrics() async throws {
        try await Self.serve { port in
            let answer = try await RawHTTP.exchange(port: port, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            #expect(answer.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(answer)")
            #expect(answer.lowercased().contains("content-type: text/plain; version=0.0.4; charset=utf-8\r\n"))
            #expect(answer.contains("\nminitorrent_test_total 3\n"))
            #expect(answer.contains("\nminitorrent_test_scrapes 1"), "the gauges read at scrape time are set before the answer")
            let again = try await RawHTTP.exchange(port: port, "GET /metrics?format=text HTTP/1.0\r\n\r\n")
            #expect(again.hasPrefix("HTTP/1.0 200 OK\r\n"))
            #expect(again.contains("\nminitorrent_test_scrapes 2"))
        }
    }

    @Test func otherPathsAreNotFoundAndOtherMethodsNotAllowed() async throws {
        try await Self.serve { port in
            let other = try await RawHTTP.exchange(port: port, "GET /metrics/extra HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(other.hasPrefix("HTTP/1.1 404 Not Found\r\n"), "\(other)")
            #expect(!other.contains("minitorrent_test_total"))
            let root = try await RawHTTP.exchange(port: port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(root.hasPrefix("HTTP/1.1 404 Not Found\r\n"))
            let post = try await RawHTTP.exchange(port: port, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
            #expect(post.hasPrefix("HTTP/1.1 405 Method Not Allowed\r\n"), "\(post)")
            #expect(post.lowercased().contains("allow: get, head\r\n"))
            let garbage = try await RawHTTP.exchange(port: port, "NOT HTTP AT ALL\r\n\r\n")
            #expect(garbage.hasPrefix("HTTP/1.1 400 Bad Request\r\n"), "\(garbage)")
        }
    }

    @Test func aRequestLargerThanTheLimitIsClosedUnanswered() async throws {
        try await Self.serve { port in
            let padding = String(repeating: "a", count: MetricsEndpoint.maximumRequestBytes)
            let answer = try await RawHTTP.exchange(port: port, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Padding: \(padding)\r\n\r\n")
            #expect(answer.isEmpty, "\(answer.prefix(200))")
            let small = try await RawHTTP.exchange(port: port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(small.hasPrefix("HTTP/1.1 200 OK\r\n"), "the endpoint still serves after closing an oversized request")
        }
    }

    @Test func metricsCountIntoTheRegistryWithTheirLabels() throws {
        let registry = PrometheusCollectorRegistry()
        withMetricsFactory(PrometheusMetricsFactory(registry: registry)) {
            CounterMetric.handshakes.increment("ok", "none")
            CounterMetric.handshakes.increment("ok", "none")
            CounterMetric.handshakes.increment("refused", "revoked")
            CounterMetric.trackerRequests.increment("get", "NO_SEEDERS")
            CounterMetric.peerDownloadedBytes.increment(by: 1000)
            GaugeMetric.peerConnectionsOpen.increment("out")
            GaugeMetric.peerConnectionsOpen.increment("out")
            GaugeMetric.peerConnectionsOpen.decrement("out")
            GaugeMetric.trackerRegistryFiles.set(7)
        }
        let text = registry.emitToString()
        #expect(text.contains(#"minitorrent_tls_handshakes_total{outcome="ok",reason="none"} 2"#))
        #expect(text.contains(#"minitorrent_tls_handshakes_total{outcome="refused",reason="revoked"} 1"#))
        #expect(text.contains(#"minitorrent_tracker_requests_total{operation="get",outcome="NO_SEEDERS"} 1"#))
        #expect(text.contains("minitorrent_peer_downloaded_bytes_total 1000"))
        #expect(text.contains(#"minitorrent_peer_connections_open{direction="out"} 1"#))
        #expect(text.contains("minitorrent_tracker_registry_files 7"))
    }
}

/// Sends raw bytes to 127.0.0.1 and gathers everything that comes back until the server closes
/// (or 10 seconds pass): an HTTP client that can also send what no HTTP client would.
enum RawHTTP {
    static func exchange(port: Int, _ request: String) async throws -> String {
        let group = MultiThreadedEventLoopGroup.singleton
        let done = group.next().makePromise(of: String.self)
        // The request goes out from the event loop as soon as the connection is up, whatever the
        // test's own threads are doing meanwhile.
        _ = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(Gatherer(request: request, done: done)) }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return try await done.futureResult.get()
    }

    private final class Gatherer: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer

        private let request: String
        private let done: EventLoopPromise<String>
        private var received = ""

        init(request: String, done: EventLoopPromise<String>) {
            self.request = request
            self.done = done
        }

        func channelActive(context: ChannelHandlerContext) {
            let channel = context.channel
            channel.eventLoop.scheduleTask(in: .seconds(10)) { channel.close(promise: nil) }
            context.writeAndFlush(NIOAny(channel.allocator.buffer(string: request)), promise: nil)
            context.fireChannelActive()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var buffer = unwrapInboundIn(data)
            received += buffer.readString(length: buffer.readableBytes) ?? ""
        }

        func errorCaught(context: ChannelHandlerContext, error: Error) {
            context.close(promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            done.succeed(received)
        }
    }
}
