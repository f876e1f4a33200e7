import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import MTorrentFormat
import PKI
import Peer
import PKITesting
import TLS
import Tracker
import Wire

/// The registry at scale: a generated `seeders.txt` of `files` files, each claimed by one of
/// 10,000 peers and held by two of them; the start of a registry over it (time and peak resident memory, in a process of its own);
/// GET/s on it next to a registry of one file; durable SHARE/s over 64 connections, of fresh
/// headers (each a new root, checked in full) and of headers announced again.
enum RegistryScale {
    static let peers = 10_000

    static func run(files: Int, seconds: Int) async throws {
        let ca = try TestAuthority()
        try ca.identity(.tracker(name: "tracker", dnsNames: [], ipAddresses: ["127.0.0.1"], days: 30))
        try ca.peer("client")
        let big = ca.folder.file("big")
        let generated = Date()
        let bytes = try generate(files: 0..<files, into: big)
        // The reference holds only the file the GETs ask for, with the same two holders.
        let probe = root(files / 2)
        _ = try generate(files: [files / 2], into: ca.folder.file("small"))
        print(String(format: "generated %d files x 2 holders (%d peers): %.0f MiB in %.1f s", files, peers, Double(bytes) / 1_048_576, Date().timeIntervalSince(generated)))

        let child = Process()
        child.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
        child.arguments = ["registry-start", big]
        try child.run()
        child.waitUntilExit()

        let serverGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let clientGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let identity = try SigningIdentity.load(named: "client", from: ca.layout)
        let pem = try String(contentsOfFile: ca.layout.certificate(named: "client"), encoding: .utf8)
        // Every share carries a header the client signed; signing them is not measured. Fresh
        // shares each name a new root (a full check of the header); re-announces send the same
        // few headers again and again.
        let signing = Date()
        let freshProofs = try proofs(count: connections * freshPerConnection, from: files, identity: identity, pem: pem)
        let repeatedProofs = try proofs(count: connections * repeatedPerConnection, from: files + freshProofs.count, identity: identity, pem: pem)
        print(String(format: "signed %d headers in %.1f s", freshProofs.count + repeatedProofs.count, Date().timeIntervalSince(signing)))
        let tls = try TLSBackend.openssl.makeContext(TLSConfiguration(identity: identity, trust: TrustSource(try ca.trust()), peerRole: .tracker))
        var rates: [String: Double] = [:]
        var freshRanOut = false
        var servers: [(label: String, server: TrackerServer, port: Int)] = []
        for (label, folder) in [("one file", ca.folder.file("small")), ("\(files) files", big)] {
            var configuration = TrackerConfiguration(host: "127.0.0.1", port: 0, pki: ca.layout, name: "tracker", aclPath: nil, dataFolder: folder)
            configuration.maximumConnectionsPerPeer = connections
            // One client certificate makes every request: the per-certificate rate limit and files quota are off here.
            configuration.requestsPerSecond = 0
            configuration.maximumFilesPerPeer = .max
            var logger = Logger(label: "tracker")
            logger.logLevel = .error
            let server = try TrackerServer(configuration: configuration, logger: logger)
            let port = try server.start(group: serverGroup).port!
            servers.append((label, server, port))
        }
        // GETs on the two registries in alternating one-second windows, so that whatever else the
        // machine does falls on both alike; the ratio is of their sums.
        var roundRatios: [Double] = []
        for _ in 0..<seconds {
            var round: [Double] = []
            for (label, _, port) in servers {
                let rate = try TrackerBenchmark.persistentRate(port: port, tls: tls, group: clientGroup, connections: 16, window: 32, seconds: 1) { _ in
                    { TrackerRequest.get(file: probe).line + "\n" }
                }
                rates["get " + label, default: 0] += rate / Double(seconds)
                round.append(rate)
            }
            roundRatios.append(round[1] / round[0])
        }
        for (label, server, port) in servers {
            for (kind, proofs, perConnection) in [("fresh", freshProofs, freshPerConnection), ("repeated", repeatedProofs, repeatedPerConnection)] {
                let counters = (0..<connections).map { _ in Counter() }
                rates["share \(kind) " + label] = try TrackerBenchmark.persistentRate(
                    port: port, tls: tls, group: clientGroup, connections: connections, window: 4, seconds: seconds
                ) { connection in
                    { [counters] in
                        let index = connection * perConnection + (counters[connection].next() - 1) % perConnection
                        let request = proofs[index]
                        return TrackerRequest.share(file: request.file, port: 6001, proof: request.proof).line + "\n"
                    }
                }
                if kind == "fresh" { freshRanOut = freshRanOut || counters.contains { $0.value > perConnection } }
            }
            server.stop()
        }
        roundRatios.sort()
        print(String(format: "GET ratio per one-second round: min %.2f, median %.2f, max %.2f", roundRatios.first!, roundRatios[roundRatios.count / 2], roundRatios.last!))
        for label in ["get one file", "get \(files) files"] + ["fresh", "repeated"].flatMap({ ["share \($0) one file", "share \($0) \(files) files"] }) {
            print(String(format: "%@: %.0f/s", label, rates[label]!))
        }
        if freshRanOut { print("fresh headers ran out: some fresh shares were re-announces; raise freshPerConnection") }
        print(String(format: "GET on %d files / GET on one file: %.2f", files, rates["get \(files) files"]! / rates["get one file"]!))
        try await serverGroup.shutdownGracefully()
        try await clientGroup.shutdownGracefully()
    }

    /// Connections that share at once, and the headers each sends: fresh ones each once, repeated ones in turn.
    static let connections = 64
    static let freshPerConnection = 1_000
    static let repeatedPerConnection = 10

    /// `count` signed headers of roots `first`, `first + 1`, … (signed on every core).
    static func proofs(count: Int, from first: Int, identity: SigningIdentity, pem: String) throws -> [(file: FileID, proof: [UInt8])] {
        let signed = NIOLockedValueBox([Int: (file: FileID, proof: [UInt8])]())
        let failure = NIOLockedValueBox<(any Error)?>(nil)
        let cores = ProcessInfo.processInfo.activeProcessorCount
        DispatchQueue.concurrentPerform(iterations: cores) { core in
            for index in stride(from: core, to: count, by: cores) {
                do {
                    let file = root(first + index)
                    let header = try proof(file, size: 1, name: "s", identity: identity, pem: pem)
                    signed.withLockedValue { $0[index] = (file, header) }
                } catch {
                    failure.withLockedValue { $0 = error }
                }
            }
        }
        if let error = failure.withLockedValue({ $0 }) { throw error }
        return signed.withLockedValue { all in (0..<count).map { all[$0]! } }
    }

    /// Opens the registry in `folder` and prints the time it took and the process's peak memory.
    static func start(folder: String) throws {
        let started = Date()
        let registry = try Registry(folder: folder, timeToLive: 300)
        let elapsed = Date().timeIntervalSince(started)
        let counts = registry.counts
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let cpu = Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
        print(String(format: "registry start: %d files, %d holders in %.2f s (%.2f s of CPU); %@", counts.files, counts.holders, elapsed, cpu, memory()))
    }

    /// Peak and current resident memory from /proc/self/status.
    static func memory() -> String {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        return status.split(separator: "\n").filter { $0.hasPrefix("VmHWM") || $0.hasPrefix("VmRSS") }
            .map { $0.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ") }.joined(separator: ", ")
    }

    /// The root hash of generated file `index`.
    static func root(_ index: Int) -> FileID {
        FileID(hex: String(format: "%064lx", index &* 2_654_435_761 &+ 1))!
    }

    /// A `.mtorrent` header naming `file`, signed by `identity` (whose certificate file, ending in a
    /// line feed, is `pem`).
    static func proof(_ file: FileID, size: UInt64, name: String, identity: SigningIdentity, pem: String) throws -> [UInt8] {
        let signed = Array("mtorrent 2\ntracker 127.0.0.1:7001\nname \(name)\nsize \(size)\npiece-size 262144\nhash-algorithm sha256\nroot \(file)\nsigner\n\(pem)".utf8)
        return signed + Array("signature \(Hex.encode(try identity.sign(signed)))\n".utf8)
    }

    /// Writes a `seeders.txt` of files `indices`, each claimed by one of ``peers`` peers and held
    /// by two; returns its bytes.
    static func generate(files indices: some Sequence<Int>, into folder: String) throws -> Int {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let path = folder + "/seeders.txt"
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        let fingerprints = (0..<peers).map { String(format: "%064lx", $0 &* 40_503 &+ 7) }
        var buffer = ""
        var total = 0
        for index in indices {
            let file = root(index)
            let signer = index % peers
            buffer += "claim \(file) \(1 << 20 + index) peer\(signer) \(fingerprints[signer]) file-\(index).bin\n"
            for peer in [signer, (index * 7 + 1) % peers] {
                buffer += "hold \(file) peer\(signer) 10.\(peer / 65536).\(peer / 256 % 256).\(peer % 256):6881 peer\(peer) \(fingerprints[peer])\n"
            }
            if buffer.utf8.count > 1 << 20 {
                total += buffer.utf8.count
                try handle.write(contentsOf: Data(buffer.utf8))
                buffer = ""
            }
        }
        total += buffer.utf8.count
        try handle.write(contentsOf: Data(buffer.utf8))
        // On disk before the start is measured, as a journal a tracker restarts from long has been:
        // the start then reads it without racing the kernel's write-back of it.
        try handle.synchronize()
        return total
    }
}

/// A counter one connection's request maker advances (on its event loop only).
final class Counter: @unchecked Sendable {
    private(set) var value = 0

    func next() -> Int {
        value += 1
        return value
    }
}
