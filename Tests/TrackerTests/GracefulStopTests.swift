import Foundation
import NIOCore
import Testing
import Tracker
import Wire

/// A tracker told to stop answers what it has read, keeps every change it answered, and takes
/// nothing new.
@Suite struct GracefulStopTests {
    @Test func aStoppingTrackerAnswersTheRequestsInFlightAndKeepsEveryAnsweredShare() async throws {
        let fixture = try TrackerFixture()
        let files = (1...32).map { FileID(hex: String(repeating: "0", count: 56) + String(format: "%08x", $0))! }
        let lines = try files.map { try fixture.share($0, port: 7001, signedBy: "alice").line }
        let alice = try RawLineClient(fixture: fixture, name: "alice")
        let answers = try await alice.send(all: lines)
        // The first answer is out: every line has been read (they went in one write), most are still
        // being checked or written.
        _ = try await answers[0].get()
        let clean = await fixture.server.shutDown(within: 30)
        #expect(clean)
        var answered = 0
        for answer in answers {
            let line = try await answer.get()
            #expect(line.hasPrefix("OK shared"), "\(line)")
            answered += 1
        }
        #expect(answered == files.count)
        try await alice.channel.closeFuture.get()
        #expect(fixture.server.openConnections == 0)
        // Nothing new is taken.
        await #expect(throws: (any Error).self) { _ = try await fixture.client("bob").send(.get(file: files[0])) }
        // Every answered share is in the journal.
        let reopened = try Registry(folder: fixture.dataFolder, timeToLive: 300)
        for file in files {
            guard case .holders(10, "a", let holders) = reopened.holders(of: file) else {
                Issue.record("the answered share of \(file) is not in the journal")
                continue
            }
            #expect(holders.map(\.name) == ["alice"])
        }
    }
}
