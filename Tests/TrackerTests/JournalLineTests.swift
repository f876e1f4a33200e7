import Testing
@testable import Tracker
import Wire

/// The journal's lines read from bytes: every form the journal writes reads back as itself, and
/// damaged lines are refused rather than guessed at.
@Suite struct JournalLineTests {
    private let root = String(repeating: "a1", count: 32)
    private let fingerprint = String(repeating: "0f", count: 32)

    private func parse(_ text: String) -> JournalLine? {
        Array(text.utf8).withUnsafeBytes { JournalLine($0) }
    }

    @Test func everyFormReadsBackAsWritten() throws {
        let lines = [
            "claim \(root) 1048576 alice \(fingerprint) report 2026.pdf",
            "claim \(root) 5 alice - a",
            "hold \(root) alice 127.0.0.1:6881 bob \(fingerprint)",
            "share \(root) 5 [::1]:6881 bob \(fingerprint) a  b",
            "file \(root) 18446744073709551615 alice a b",
            "remove \(root) 127.0.0.1:6881 bob \(fingerprint)",
            "remove \(root) 127.0.0.1:6881 bob",
            "withdraw \(root) alice",
            "withdraw \(root)",
            "allow \(root)",
            "leave 127.0.0.1:6881 bob \(fingerprint)",
            "leave 127.0.0.1:6881 bob",
        ]
        for line in lines {
            let parsed = try #require(parse(line), "refused: \(line)")
            #expect(parsed.text == line)
        }
        guard case .hold(let file, "alice", "127.0.0.1:6881", "bob", let holder)? = parse(lines[2]) else {
            Issue.record("a hold line read as something else")
            return
        }
        #expect(file.file == FileID(hex: root))
        #expect(holder == Fingerprint(fingerprint))
    }

    @Test func damagedLinesAreRefused() {
        let damaged = [
            "",
            "claim \(root) 5 alice \(fingerprint)",
            "claim \(root) 5 alice \(fingerprint) ",
            "claim \(root) +5 alice \(fingerprint) a",
            "claim \(root) 18446744073709551616 alice \(fingerprint) a",
            "claim \(root.uppercased()) 5 alice \(fingerprint) a",
            "claim \(root.dropLast()) 5 alice \(fingerprint) a",
            "claim \(root) 5 alice \(fingerprint.dropLast())g a",
            "hold \(root) alice  127.0.0.1:6881 bob \(fingerprint)",
            "hold \(root) alice 127.0.0.1:6881 bob \(fingerprint) extra",
            "hold \(root) alice 127.0.0.1:6881 bob \(fingerprint) ",
            "remove \(root) 127.0.0.1:6881",
            "withdraw \(root) ",
            "allow \(root) alice",
            "leave 127.0.0.1:6881",
            "leave 127.0.0.1:6881 bob \(fingerprint) x",
            "grant \(root)",
            "hold" + String(repeating: " x", count: JournalLine.maximumLength),
        ]
        for line in damaged {
            #expect(parse(line) == nil, "accepted: \(line.prefix(100))")
        }
    }

    @Test func rootsReadEveryHexDigitInItsPlaceAndNothingElse() throws {
        let digits = String(repeating: "0123456789abcdef", count: 4)
        #expect(Array(digits.utf8).withUnsafeBytes { RootKey(hex: $0) }?.file == FileID(hex: digits))
        let reversed = String(digits.reversed())
        #expect(Array(reversed.utf8).withUnsafeBytes { RootKey(hex: $0) }?.description == reversed)
        for position in 0..<64 {
            for bad in ["/", ":", "`", "g", "A", "F", " ", "\u{7f}", "é"] {
                var bytes = Array(digits.utf8)
                bytes.replaceSubrange(position...position, with: bad.utf8.prefix(1))
                #expect(bytes.withUnsafeBytes { RootKey(hex: $0) } == nil, "accepted \(bad) at \(position)")
            }
        }
    }

    @Test func fingerprintsReadOnlyLowercaseHexOrADash() {
        #expect(Fingerprint(fingerprint)?.description == fingerprint)
        #expect(Fingerprint("-") == Fingerprint.none)
        #expect(Fingerprint(fingerprint.uppercased()) == nil)
        #expect(Fingerprint(String(fingerprint.dropFirst())) == nil)
        #expect(Fingerprint("") == nil)
    }
}

/// The table that finds a file's slot by its root agrees with a dictionary through any mix of
/// insertions and removals, across growth and wrapped runs of buckets.
@Suite struct SlotTableTests {
    @Test func agreesWithADictionaryThroughInsertionsAndRemovals() {
        var generator = SystemRandomNumberGenerator()
        let roots = (0..<3_000).map { index in RootKey(FileID(bytes: (0..<32).map { UInt8(truncatingIfNeeded: index >> ($0 % 4 * 8)) &+ UInt8($0) })!) }
        var table = SlotTable()
        var model: [RootKey: UInt32] = [:]
        let rootOf = { (slot: UInt32) in roots[Int(slot)] }
        var disagreements = 0
        for _ in 0..<20_000 {
            let slot = UInt32.random(in: 0..<UInt32(roots.count), using: &generator)
            let root = roots[Int(slot)]
            if model[root] == nil {
                if table.insert(slot, for: root, rootOf: rootOf) != nil { disagreements += 1 }
                if table.insert(slot, for: root, rootOf: rootOf) != slot { disagreements += 1 }
                model[root] = slot
            } else if Bool.random(using: &generator) {
                if table.remove(root, rootOf: rootOf) != slot { disagreements += 1 }
                model[root] = nil
            }
        }
        #expect(disagreements == 0)
        #expect(table.count == model.count)
        #expect(roots.allSatisfy { table.find($0, rootOf: rootOf) == model[$0] })
        #expect(Set(table.slots) == Set(model.values))
    }
}
