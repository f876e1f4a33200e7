import Foundation
import PKI
import PKITesting
import TLS

/// A CA with a tracker (names 127.0.0.1 and localhost) and two peers, and helpers to build TLS
/// contexts for any of them.
struct TLSFixture {
    let ca: TestAuthority
    let trust: TrustSource

    init() throws {
        ca = try TestAuthority()
        try ca.identity(.tracker(name: "tracker1", dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"], days: 30))
        try ca.peer("alice", groups: ["lab"])
        try ca.peer("bob")
        trust = TrustSource(try ca.trust())
    }

    /// A context that presents `name`'s certificate and expects the other side to be `peerRole`.
    func context(_ name: String, expecting peerRole: Role, backend: TLSBackend = .openssl, authority: TestAuthority? = nil) throws -> TLSContext {
        let identity = try SigningIdentity.load(named: name, from: (authority ?? ca).layout)
        return try backend.makeContext(TLSConfiguration(identity: identity, trust: trust, peerRole: peerRole))
    }

    /// Reloads the CA certificate and CRL from disk into the shared trust source.
    func reload() throws {
        trust.replace(with: try ca.trust())
    }
}

/// Every client/server combination of the backends in this build.
let backendPairs: [(TLSBackend, TLSBackend)] = TLSBackend.available.flatMap { client in TLSBackend.available.map { (client, $0) } }

/// Two engines connected through memory: bytes drained from one are fed to the other.
struct EnginePair {
    let client: TLSEngine
    let server: TLSEngine

    struct Outcome {
        var client: Result<VerifiedIdentity, TLSError>?
        var server: Result<VerifiedIdentity, TLSError>?
    }

    /// Runs both handshakes to their end (at most 20 round trips), then lets the client read once,
    /// which is when a TLS 1.3 client learns that the server refused its certificate.
    func handshake() -> Outcome {
        var outcome = Outcome()
        for _ in 0..<20 {
            if outcome.client == nil { outcome.client = Self.step(client.handshake()) }
            if outcome.server == nil { outcome.server = Self.step(server.handshake()) }
            let moved = Self.move(from: client, to: server) + Self.move(from: server, to: client)
            if moved == 0, outcome.client != nil, outcome.server != nil { break }
        }
        if case .success? = outcome.client {
            var scratch = [UInt8](repeating: 0, count: 1024)
            if case .failed(let error) = scratch.withUnsafeMutableBytes({ client.readPlaintext(into: $0) }) {
                outcome.client = .failure(error)
            }
        }
        return outcome
    }

    static func move(from source: TLSEngine, to destination: TLSEngine) -> Int {
        let count = source.pendingCiphertext
        guard count > 0 else { return 0 }
        var bytes = [UInt8](repeating: 0, count: count)
        let moved = bytes.withUnsafeMutableBytes { source.drainCiphertext(into: $0) }
        bytes.withUnsafeBytes { destination.consumeCiphertext(UnsafeRawBufferPointer(rebasing: $0.prefix(moved))) }
        return moved
    }

    private static func step(_ step: TLSStep<VerifiedIdentity>) -> Result<VerifiedIdentity, TLSError>? {
        switch step {
        case .complete(let identity): return .success(identity)
        case .failed(let error): return .failure(error)
        case .incomplete: return nil
        }
    }
}

extension Result where Failure == TLSError {
    var error: TLSError? {
        if case .failure(let error) = self { return error }
        return nil
    }

    var identity: Success? {
        if case .success(let value) = self { return value }
        return nil
    }
}
