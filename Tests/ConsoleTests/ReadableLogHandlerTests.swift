@testable import Console
import Foundation
import Logging
import Testing

/// Log lines are short and plain at info, whole when something went wrong.
@Suite struct ReadableLogHandlerTests {
    private let time = Date(timeIntervalSince1970: 1_800_000_000)

    @Test func aLineHasTimeLevelLabelMessageAndSortedQuotedMetadata() {
        let line = ReadableLogHandler.format(
            time: time, level: .info, label: "peer", message: "serving",
            metadata: ["peer": "carol", "file": "data.bin (0123456789ab)", "me": "alice"]
        )
        #expect(line == "2027-01-15T08:00:00Z info peer: serving file=\"data.bin (0123456789ab)\" me=alice peer=carol")
    }

    @Test func infoLinesAreCutAndWarningsKeptWhole() {
        let long = String(repeating: "x", count: 300)
        let info = ReadableLogHandler.format(time: time, level: .info, label: "tracker", message: long, metadata: [:])
        #expect(info.count == ReadableLogHandler.maximumLength && info.hasSuffix("…"))
        let warning = ReadableLogHandler.format(time: time, level: .warning, label: "tracker", message: long, metadata: [:])
        #expect(warning.hasSuffix(long))
    }

    @Test func aValueCannotBreakTheLineOrForgeAKey() {
        let line = ReadableLogHandler.format(time: time, level: .warning, label: "tracker", message: "bad\nrequest", metadata: ["request": "GET x\npeer=admin \"q\""])
        #expect(!line.contains("\n"))
        #expect(line.hasSuffix("request=\"GET x peer=admin \\\"q\\\"\""), "\(line)")
    }
}
