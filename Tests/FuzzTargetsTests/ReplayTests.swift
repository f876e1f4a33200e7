import Foundation
import FuzzTargets
import MTorrentFormat
import PKI
import Testing

/// Replays the committed seed inputs and every input a fuzzer once crashed on.
@Suite struct ReplayTests {
    private static let fuzzFolder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Fuzz").standardized

    private func inputs(_ kind: String, _ target: FuzzTarget) throws -> [URL] {
        let folder = Self.fuzzFolder.appendingPathComponent("\(kind)/\(target.rawValue)")
        guard FileManager.default.fileExists(atPath: folder.path) else { return [] }
        return try FileManager.default.contentsOfDirectory(at: folder, includingPropertiesForKeys: nil).filter { !$0.lastPathComponent.hasPrefix(".") }
    }

    @Test(arguments: FuzzTarget.allCases) func everySeedAndRegressionInputIsHandled(_ target: FuzzTarget) throws {
        let seeds = try inputs("corpus", target)
        #expect(!seeds.isEmpty, "no seed inputs for \(target.rawValue)")
        for input in try seeds + inputs("regressions", target) {
            target.run(Array(try Data(contentsOf: input)))
        }
    }

    @Test(arguments: ["sample.mtorrent", "sample-v2.mtorrent"])
    func theSeedMTorrentsAreValidFilesSoTheFuzzerStartsFromAcceptedInput(_ name: String) throws {
        let bytes = Array(try Data(contentsOf: Self.fuzzFolder.appendingPathComponent("corpus/mtorrent/\(name)")))
        #expect(throws: Never.self) { try MTorrentParser.parse(bytes) }
    }

    @Test(arguments: ["peer.csr", "tracker.csr"])
    func theSeedRequestsAreAcceptedSoTheFuzzerStartsFromAcceptedInput(_ name: String) throws {
        let text = try String(contentsOf: Self.fuzzFolder.appendingPathComponent("corpus/request/\(name)"), encoding: .utf8)
        #expect(throws: Never.self) { try SigningRequest(pemEncoded: text) }
    }
}
