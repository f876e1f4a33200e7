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

/// Standard input is cut into lines the way a person typing or a script writing them means.
@Suite struct InputLineSplitterTests {
    @Test func linesEndAtLineFeedsWhateverTheChunksAndCarriageReturnsAreDropped() {
        var splitter = InputLineSplitter()
        var lines = splitter.take(Array("sta".utf8))
        lines += splitter.take(Array("tus\r\n\nget a b\nhel".utf8))
        lines += splitter.take(Array("p".utf8))
        lines += splitter.finish()
        #expect(lines == [.text("status"), .text(""), .text("get a b"), .text("help")])
    }

    @Test func anOverlongLineIsReportedOnceAndTheNextLineStillCounts() {
        var splitter = InputLineSplitter()
        var lines = splitter.take(Array(repeating: UInt8(ascii: "x"), count: InputLineSplitter.maximumLength + 10))
        lines += splitter.take(Array(repeating: UInt8(ascii: "y"), count: InputLineSplitter.maximumLength))
        lines += splitter.take(Array("\nstatus\n".utf8))
        lines += splitter.finish()
        #expect(lines == [.tooLong(limit: InputLineSplitter.maximumLength), .text("status")])
    }

    @Test func bytesThatAreNotUTF8DoNotStopTheInput() {
        var splitter = InputLineSplitter()
        let lines = splitter.take([0xff, 0x41, 0x0a, 0x42, 0x0a])
        #expect(lines == [.text("\u{FFFD}A"), .text("B")])
    }
}
