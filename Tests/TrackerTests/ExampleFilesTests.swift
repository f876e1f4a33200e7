import FileIO
import Foundation
import Peer
import Tracker
import Testing

/// The example files in config/ stay valid: the programs accept them as they are.
@Suite struct ExampleFilesTests {
    private let config = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("config").path

    @Test func theTrackerConfigExampleIsAccepted() throws {
        let file = try ConfigFile(path: "\(config)/tracker.conf.example", knownKeys: TrackerConfiguration.configFileKeys)
        #expect(file.string("name") == "tracker1")
        #expect(try file.integer("ttl", in: 5...86400) == 300)
    }

    @Test func thePeerConfigExampleIsAccepted() throws {
        let file = try ConfigFile(path: "\(config)/peer.conf.example", knownKeys: PeerConfiguration.configFileKeys)
        #expect(file.string("name") == "alice")
        #expect(try file.integer("heartbeat", in: 5...3600) == 60)
    }

    @Test func theACLExampleIsAccepted() throws {
        _ = try AccessControlList.load(from: "\(config)/acl.example")
    }

    @Test func unknownAndRepeatedKeysAreRefusedWithTheirLine() throws {
        let folder = NSTemporaryDirectory() + "minitorrent-config-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try "ttl = 5\nttl = 6\n".write(toFile: folder, atomically: true, encoding: .utf8)
        #expect(throws: ConfigFileError.self) { try ConfigFile(path: folder, knownKeys: TrackerConfiguration.configFileKeys) }
        try "colour = blue\n".write(toFile: folder, atomically: true, encoding: .utf8)
        let error = try #require(throws: ConfigFileError.self) { try ConfigFile(path: folder, knownKeys: TrackerConfiguration.configFileKeys) }
        #expect(error.line == 1)
    }
}
