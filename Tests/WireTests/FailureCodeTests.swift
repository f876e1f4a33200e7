import Foundation
import Testing
import Wire

/// README.md's table of failure codes and ``FailureCode`` are one list.
@Suite struct FailureCodeTests {
    private static let readme = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("README.md")

    @Test func theReadmeListsEveryCodeAndNoOther() throws {
        let text = try String(contentsOf: Self.readme, encoding: .utf8)
        guard let section = text.components(separatedBy: "## Failure codes").dropFirst().first?.components(separatedBy: "\n## ").first else {
            Issue.record("README.md has no '## Failure codes' section")
            return
        }
        let listed = section.split(separator: "\n").compactMap { line -> String? in
            guard line.hasPrefix("| `") else { return nil }
            return line.dropFirst(3).prefix { $0 != "`" }.description
        }
        #expect(listed == FailureCode.allCases.map(\.rawValue))
    }

    @Test func everyCodeReadsBackFromTheWire() {
        for code in FailureCode.allCases {
            #expect(FailureCode(wire: code.rawValue) == code)
        }
        #expect(FailureCode(wire: "busy") == nil)
        #expect(FailureCode(wire: "") == nil)
    }
}
