import Foundation
import MTorrentFormat
import PKI
import PKITesting

/// A CA, a peer 'alice' and a small shared file with its signed `.mtorrent`.
struct Fixture {
    let ca: TestAuthority
    let alice: SigningIdentity
    let dataPath: String
    let torrent: MTorrent
    let bytes: [UInt8]

    static let trackers = [TrackerAddress("127.0.0.1:7001")!, TrackerAddress("127.0.0.1:7002")!]

    init(size: Int = 40_000, pieceSize: Int = 16 * 1024, name: String = "report.pdf") throws {
        ca = try TestAuthority()
        alice = try ca.peer("alice", groups: ["lab"])
        dataPath = ca.folder.file(name)
        try Data((0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31) }).write(to: URL(fileURLWithPath: dataPath))
        torrent = try MTorrent.create(fileAt: dataPath, trackers: Self.trackers, identity: alice, trust: ca.trust(), pieceSize: pieceSize)
        bytes = try torrent.serialized()
    }

    var text: String { String(decoding: bytes, as: UTF8.self) }

    /// The text with one line replaced, inserted or removed; lines are counted from 0.
    func editing(_ edit: (inout [String]) -> Void) -> [UInt8] {
        var lines = text.components(separatedBy: "\n")
        edit(&lines)
        return Array(lines.joined(separator: "\n").utf8)
    }
}
