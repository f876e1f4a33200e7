import Foundation
import MTorrentFormat
import NIOPosix
import PKI
import PKITesting
import Peer
import TLS
import Testing
import Wire

struct TrackerDidNotStart: Error {
    let output: String
}

/// A `tracker` process started from the built binary, stopped by its PID.
final class TrackerProcess {
    let process = Process()
    let address: TrackerAddress
    private let output = Pipe()

    init(folder: String, arguments: [String], listen: String = "127.0.0.1:0") throws {
        process.executableURL = Command.productsFolder.appendingPathComponent("tracker")
        process.arguments = [listen] + arguments
        process.currentDirectoryURL = URL(fileURLWithPath: folder)
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        // The first line names the bound address: "tracker 'NAME' listening on HOST:PORT; …".
        var line = Data()
        let deadline = Date() + 20
        while !line.contains(UInt8(ascii: "\n")), Date() < deadline {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            line.append(chunk)
        }
        let text = String(decoding: line, as: UTF8.self)
        guard let range = text.range(of: "listening on "),
              let address = TrackerAddress(text[range.upperBound...].prefix { $0 != ";" })
        else {
            process.terminate()
            throw TrackerDidNotStart(output: text)
        }
        self.address = address
    }

    func kill9() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    func signal(_ number: Int32) {
        kill(process.processIdentifier, number)
    }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }

    deinit { stop() }
}

@Suite(.serialized) struct TrackerProcessTests {
    private let ca: TestAuthority
    private let group = MultiThreadedEventLoopGroup.singleton

    init() throws {
        ca = try TestAuthority()
        try ca.identity(.tracker(name: "tracker1", dnsNames: [], ipAddresses: ["127.0.0.1"], days: 30))
        try ca.peer("alice")
        try ca.peer("bob")
    }

    private func client(_ name: String, _ tracker: TrackerProcess) throws -> TrackerClient {
        let identity = try SigningIdentity.load(named: name, from: ca.layout)
        let tls = try TLSBackend.openssl.makeContext(TLSConfiguration(identity: identity, trust: TrustSource(try ca.trust()), peerRole: .tracker))
        return TrackerClient(address: tracker.address, tls: tls, group: group)
    }

    private func start() throws -> TrackerProcess {
        try TrackerProcess(folder: ca.folder.path, arguments: ["--pki", ca.layout.folder, "--name", "tracker1", "--data", ca.folder.file("data")])
    }

    @Test func anAnsweredShareSurvivesKillNine() async throws {
        let first = try start()
        let dataPath = ca.folder.file("data.bin")
        try Data(repeating: 0xc3, count: 42).write(to: URL(fileURLWithPath: dataPath))
        let alice = try SigningIdentity.load(named: "alice", from: ca.layout)
        let torrent = try MTorrent.create(fileAt: dataPath, trackers: [first.address], identity: alice, trust: ca.trust())
        let file = FileID(bytes: torrent.root)!
        let share = TrackerRequest.share(file: file, port: 7001, proof: try #require(torrent.signedHeader).bytes)
        #expect(try await client("alice", first).send(share) == .ok("shared \(file) from 127.0.0.1:7001"))
        first.kill9()
        let second = try start()
        defer { second.stop() }
        guard case .holders(42, "data.bin", let holders) = try await client("bob", second).send(.get(file: file)) else {
            Issue.record("the share answered before kill -9 was lost")
            return
        }
        #expect(holders.map(\.name) == ["alice"])
    }

    @Test func aRevokedPeerIsRefusedAfterSIGHUP() async throws {
        let tracker = try start()
        defer { tracker.stop() }
        let file = FileID(hex: String(repeating: "d4", count: 32))!
        #expect(try await client("alice", tracker).send(.get(file: file)) == .failure(code: .fileNotFound, message: "no peer shares \(file)"))
        try ca.authority.revoke(name: "alice", reason: .keyCompromise)
        tracker.signal(SIGHUP)
        try await Task.sleep(for: .milliseconds(500))
        let alice = try client("alice", tracker)
        await #expect(throws: TrackerUnreachable.self) { try await alice.send(.get(file: file)) }
        #expect(try await client("bob", tracker).send(.get(file: file)) == .failure(code: .fileNotFound, message: "no peer shares \(file)"))
    }
}
