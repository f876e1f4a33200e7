import Foundation
import Logging
import MTorrentFormat
import NIOPosix
import PKI
import PKITesting
import Peer
import TLS
import Tracker
import Wire
import X509

/// A CA with a tracker and peers, a tracker server on 127.0.0.1, and clients for the peers.
final class TrackerFixture: @unchecked Sendable {
    let ca: TestAuthority
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    let dataFolder: String
    private(set) var server: TrackerServer!
    private(set) var address: TrackerAddress!

    /// Changes to the server's configuration (limits) applied at every start.
    private let adjust: @Sendable (inout TrackerConfiguration) -> Void
    /// The server's log (nowhere unless a test looks at it).
    private let logger: Logger?

    init(
        acl: String? = nil, timeToLive: TimeInterval = 300, logger: Logger? = nil,
        adjust: @escaping @Sendable (inout TrackerConfiguration) -> Void = { _ in }
    ) throws {
        self.adjust = adjust
        self.logger = logger
        ca = try TestAuthority()
        try ca.identity(.tracker(name: "tracker1", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], days: 30))
        try ca.peer("alice", groups: ["lab"])
        try ca.peer("bob", groups: ["lab"])
        try ca.peer("carol", groups: ["ops"])
        dataFolder = ca.folder.file("tracker-data")
        var aclPath: String?
        if let acl {
            aclPath = ca.folder.file("acl")
            try acl.write(toFile: aclPath!, atomically: true, encoding: .utf8)
        }
        try start(aclPath: aclPath, timeToLive: timeToLive)
    }

    /// Starts (or restarts) the tracker server on a fresh port over the same data folder.
    func start(aclPath: String?, timeToLive: TimeInterval = 300) throws {
        server?.stop()
        var configuration = TrackerConfiguration(host: "127.0.0.1", port: 0, pki: ca.layout, name: "tracker1", aclPath: aclPath, dataFolder: dataFolder)
        configuration.timeToLive = timeToLive
        adjust(&configuration)
        var logger = self.logger ?? Logger(label: "tracker-test")
        if self.logger == nil { logger.logLevel = .critical }
        server = try TrackerServer(configuration: configuration, logger: logger)
        let bound = try server.start(group: group)
        address = TrackerAddress("127.0.0.1:\(bound.port!)")!
    }

    /// A client speaking for `name`, with certificates from `authority` (ours by default). Its
    /// deadline is long: suites running beside this one can hold up the tracker's tasks for
    /// seconds on a busy machine, and no test here is about time.
    func client(_ name: String, authority: TestAuthority? = nil) throws -> TrackerClient {
        let source = authority ?? ca
        let identity = try SigningIdentity.load(named: name, from: source.layout)
        let tls = try TLSBackend.openssl.makeContext(TLSConfiguration(identity: identity, trust: TrustSource(try source.trust()), peerRole: .tracker))
        return TrackerClient(address: address, tls: tls, group: group, timeoutSeconds: 30)
    }

    /// A version 2 signed header for `file`, as `signer` (a peer of `authority`, ours by default)
    /// would sign it; any root and size may be claimed, as an insider can.
    func signedHeader(_ file: FileID, size: UInt64, name: String = "a", signedBy signer: String, authority: TestAuthority? = nil) throws -> [UInt8] {
        let identity = try SigningIdentity.load(named: signer, from: (authority ?? ca).layout)
        let signed = Array("""
            mtorrent 2
            tracker 127.0.0.1:7001
            name \(name)
            size \(size)
            piece-size 262144
            hash-algorithm sha256
            root \(file)
            signer
            \(try identity.certificate.serializeAsPEM().pemString)

            """.utf8)
        return signed + Array("signature \(Hex.encode(try identity.sign(signed)))\n".utf8)
    }

    /// A share of `file` by a holder serving on `port`, proved by a header `signer` signed.
    func share(_ file: FileID, size: UInt64 = 10, name: String = "a", port: UInt16, signedBy signer: String) throws -> TrackerRequest {
        .share(file: file, port: port, proof: try signedHeader(file, size: size, name: name, signedBy: signer))
    }

    deinit {
        server?.stop()
        try? group.syncShutdownGracefully()
    }
}

let fileA = FileID(hex: String(repeating: "a1", count: 32))!
let fileB = FileID(hex: String(repeating: "b2", count: 32))!
