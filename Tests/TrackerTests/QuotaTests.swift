import Foundation
import Logging
import Synchronization
import Testing
import Tracker
import Wire

/// Per-certificate request rate and log budget: an insider flooding the tracker over real TLS
/// on 127.0.0.1 gets QUOTA and few log lines, while another peer is served.
@Suite(.serialized) struct QuotaTests {
    @Test func aCertificateOverItsRequestRateIsToldSoAndOthersAreServed() async throws {
        let fixture = try TrackerFixture {
            $0.requestsPerSecond = 5
            $0.requestBurst = 10
        }
        let greedy = try RawLineClient(fixture: fixture, name: "alice")
        let started = ContinuousClock.now
        let answers = try await greedy.exchange(all: Array(repeating: "GET \(fileA)", count: 60))
        let seconds = Double((ContinuousClock.now - started).components.seconds) + 1
        let refused = answers.filter { $0.hasPrefix("ERR QUOTA") }.count
        // At most the burst and the sustained rate over the time the flood took got through.
        #expect(60 - refused <= 10 + Int(5 * seconds), "\(60 - refused) of 60 answered in about \(seconds) s")
        #expect(refused > 0)
        let honest = try await fixture.client("bob").send(.get(file: fileA))
        #expect(honest == .failure(code: .fileNotFound, message: "no peer shares \(fileA)"))
    }

    @Test func aFloodOfRequestsCannotFloodTheLog() async throws {
        let capture = LogCapture()
        let fixture = try TrackerFixture(logger: capture.logger) { $0.requestsPerSecond = 0 }
        let greedy = try RawLineClient(fixture: fixture, name: "alice")
        let started = ContinuousClock.now
        _ = try await greedy.exchange(all: Array(repeating: "GET \(fileA)", count: 300))
        let seconds = Double((ContinuousClock.now - started).components.seconds) + 1
        let lines = capture.count(peer: "alice")
        #expect(lines <= 20 + Int(2 * seconds) + 1, "\(lines) log lines for 300 requests in about \(seconds) s")
        _ = try await fixture.client("bob").send(.get(file: fileA))
        #expect(capture.count(peer: "bob") >= 1, "another peer's requests are still logged")
    }
}

/// Keeps the log records a tracker writes, to count the lines about each peer.
final class LogCapture: Sendable {
    private let peers = Mutex<[String]>([])

    /// A logger at level debug (routine requests are logged there) whose records come here.
    var logger: Logger {
        var logger = Logger(label: "tracker-test") { [self] _ in Handler(capture: self) }
        logger.logLevel = .debug
        return logger
    }

    func count(peer: String) -> Int {
        peers.withLock { $0.count { $0 == peer } }
    }

    fileprivate func record(_ metadata: Logger.Metadata?) {
        guard case .string(let peer)? = metadata?["peer"] else { return }
        peers.withLock { $0.append(peer) }
    }

    private struct Handler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .info

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            capture.record(event.metadata)
        }
    }
}
