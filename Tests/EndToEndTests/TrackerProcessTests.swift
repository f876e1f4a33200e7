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
    /// Where it serves its metrics, when started with `--metrics`.
    let metricsURL: String?
    private let output = Pipe()

    /// `fileSizeLimit` starts the tracker under that RLIMIT_FSIZE (bytes), as a full disk would stop it.
    init(folder: String, arguments: [String], listen: String = "127.0.0.1:0", fileSizeLimit: Int? = nil) throws {
        let tracker = Command.productsFolder.appendingPathComponent("tracker")
        if let fileSizeLimit {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/prlimit")
            // A soft limit only, so that it can be lifted again.
            process.arguments = ["--fsize=\(fileSizeLimit):unlimited", tracker.path, listen] + arguments
        } else {
            process.executableURL = tracker
            process.arguments = [listen] + arguments
        }
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
        metricsURL = text.range(of: "metrics on ").map { String(text[$0.upperBound...].prefix { $0 != ";" && $0 != "\n" }) }
    }

    /// Lifts the file-size limit, as space returning to a full disk would.
    func liftFileSizeLimit() throws {
        let prlimit = Process()
        prlimit.executableURL = URL(fileURLWithPath: "/usr/bin/prlimit")
        prlimit.arguments = ["--pid", "\(process.processIdentifier)", "--fsize=unlimited:unlimited"]
        try prlimit.run()
        prlimit.waitUntilExit()
    }

    func kill9() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    func signal(_ number: Int32) {
        kill(process.processIdentifier, number)
    }

    /// What the tracker printed after its first line, once it has exited.
    func remainingOutput() -> String {
        String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }

    deinit { stop() }
}

/// What the tests of `tracker` processes share: a CA with the certificate `tracker1` for
/// 127.0.0.1 and the peers alice and bob, and mutual-TLS clients of a tracker process as either.
struct TrackerProcessAuthority {
    let ca: TestAuthority

    init() throws {
        ca = try TestAuthority()
        try ca.identity(.tracker(name: "tracker1", dnsNames: [], ipAddresses: ["127.0.0.1"], days: 30))
        try ca.peer("alice")
        try ca.peer("bob")
    }

    func client(_ name: String, _ tracker: TrackerProcess, timeoutSeconds: Int64 = TrackerClient.defaultTimeoutSeconds) throws -> TrackerClient {
        let identity = try SigningIdentity.load(named: name, from: ca.layout)
        let tls = try TLSBackend.openssl.makeContext(TLSConfiguration(identity: identity, trust: TrustSource(try ca.trust()), peerRole: .tracker))
        return TrackerClient(address: tracker.address, tls: tls, group: MultiThreadedEventLoopGroup.singleton, timeoutSeconds: timeoutSeconds)
    }
}

@Suite(.serialized) struct TrackerProcessTests {
    private let authority: TrackerProcessAuthority
    private var ca: TestAuthority { authority.ca }

    init() throws {
        authority = try TrackerProcessAuthority()
    }

    private func client(_ name: String, _ tracker: TrackerProcess) throws -> TrackerClient {
        try authority.client(name, tracker)
    }

    /// A file `name` of `size` bytes of `byte`, and its share by `signer` on `port`, proved by the
    /// header of the `.mtorrent` it signed.
    private func share(_ name: String, size: Int, of byte: UInt8, port: UInt16, signedBy signer: String) throws -> (FileID, TrackerRequest) {
        let dataPath = ca.folder.file(name)
        try Data(repeating: byte, count: size).write(to: URL(fileURLWithPath: dataPath))
        let identity = try SigningIdentity.load(named: signer, from: ca.layout)
        let torrent = try MTorrent.create(fileAt: dataPath, trackers: [TrackerAddress("127.0.0.1:7001")!], identity: identity, trust: ca.trust())
        let file = FileID(bytes: torrent.root)!
        return (file, .share(file: file, port: port, proof: try #require(torrent.signedHeader).bytes))
    }

    private func start(fileSizeLimit: Int? = nil) throws -> TrackerProcess {
        try TrackerProcess(folder: ca.folder.path, arguments: ["--pki", ca.layout.folder, "--name", "tracker1", "--data", ca.folder.file("data")], fileSizeLimit: fileSizeLimit)
    }

    @Test func aShareRefusedOnAFullDiskNeverComesBackAndLaterSharesStay() async throws {
        let first = try start()
        let (kept, keptShare) = try share("kept.bin", size: 42, of: 0xe5, port: 7001, signedBy: "alice")
        #expect(try await client("alice", first).send(keptShare) == .ok("shared \(kept) from 127.0.0.1:7001"))
        first.stop()
        // Room for part of one more journal line only.
        let journal = try FileManager.default.attributesOfItem(atPath: ca.folder.file("data") + "/seeders.txt")[.size] as! Int
        let full = try start(fileSizeLimit: journal + 60)
        let (refused, refusedShare) = try share("refused.bin", size: 7, of: 0xf6, port: 7001, signedBy: "alice")
        guard case .failure(.trackerError, _) = try await client("alice", full).send(refusedShare) else {
            Issue.record("a share that could not be written was not refused")
            return
        }
        try full.liftFileSizeLimit()
        let (later, laterShare) = try share("later.bin", size: 9, of: 0xa7, port: 7002, signedBy: "bob")
        #expect(try await client("bob", full).send(laterShare) == .ok("shared \(later) from 127.0.0.1:7002"))
        full.kill9()
        let second = try start()
        defer { second.stop() }
        let bob = try client("bob", second)
        #expect(try await bob.send(.get(file: refused)) == .failure(code: .fileNotFound, message: "no peer shares \(refused)"))
        guard case .holders(9, "later.bin", _) = try await bob.send(.get(file: later)), case .holders(42, "kept.bin", _) = try await bob.send(.get(file: kept)) else {
            Issue.record("an answered share was lost after the disk was full")
            return
        }
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

    @Test func sigtermStopsTheTrackerCleanlyWithItsAnsweredSharesKept() async throws {
        let first = try start()
        let (file, request) = try share("data.bin", size: 42, of: 0x5a, port: 7001, signedBy: "alice")
        #expect(try await client("alice", first).send(request) == .ok("shared \(file) from 127.0.0.1:7001"))
        let signalled = Date()
        first.signal(SIGTERM)
        let deadline = Date() + 20
        while first.process.isRunning, Date() < deadline { try await Task.sleep(for: .milliseconds(50)) }
        #expect(!first.process.isRunning, "still running \(Date().timeIntervalSince(signalled)) s after SIGTERM")
        guard !first.process.isRunning else { return }
        #expect(first.process.terminationStatus == 0)
        #expect(first.remainingOutput().contains("tracker stopped\n"))
        let second = try start()
        defer { second.stop() }
        guard case .holders(42, "data.bin", _) = try await client("bob", second).send(.get(file: file)) else {
            Issue.record("the share answered before SIGTERM was lost")
            return
        }
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
