import Crypto
import Foundation
import MTorrentFormat
import NIOConcurrencyHelpers
import PKI
import TLS
import Wire

/// What a share's verified signed header vouches for: the file's size and name, and its signer.
struct ProvenClaim: Sendable {
    let size: UInt64
    let name: String
    let signer: VerifiedIdentity
}

/// Why a share's proof was refused.
struct ProofRefusal: Error {
    let message: String
}

/// Checks the signed headers that shares carry, with the one validation policy (as a `.mtorrent`
/// is checked), and remembers the headers it accepted: a peer announces the same header again and
/// again, and a remembered one costs one SHA-256 instead of a certificate validation and a
/// signature check.
///
/// A header is remembered under the SHA-256 of its exact bytes, which hold the signer's
/// certificate, so only the very header that was verified matches. It counts only under the trust
/// store it was verified with: a reloaded CA certificate or CRL (a new ``TrustSource``
/// generation) forgets every header, so a revoked signer is refused on its next share. It counts
/// only inside the window in which the signer's certificate, the CA certificate and the CRL are
/// all valid, the only parts of the validation that depend on the time. At most ``capacity``
/// headers are remembered; when full, an arbitrary one makes room.
final class ProofCheck: Sendable {
    /// Most headers remembered at once.
    static let capacity = 16_384

    private struct Remembered {
        let claim: ProvenClaim
        let root: [UInt8]
        let validFrom: Date
        let validUntil: Date
    }

    private struct Memory {
        var generation: UInt64 = 0
        var headers: [SHA256Digest: Remembered] = [:]
    }

    private let trust: TrustSource
    private let memory = NIOLockedValueBox(Memory())

    init(trust: TrustSource) {
        self.trust = trust
    }

    /// Reads and verifies `proof` (or finds it verified already under the trust in force) and
    /// checks that it names `file`.
    func check(_ proof: [UInt8], of file: FileID, at time: Date = Date()) throws(ProofRefusal) -> ProvenClaim {
        let (store, generation) = trust.currentWithGeneration
        let key = SHA256.hash(data: proof)
        let remembered = memory.withLockedValue { memory -> Remembered? in
            if memory.generation < generation { memory = Memory(generation: generation) }
            return memory.generation == generation ? memory.headers[key] : nil
        }
        if let remembered, time >= remembered.validFrom, time <= remembered.validUntil {
            try Self.check(root: remembered.root, of: file)
            return remembered.claim
        }
        let header: SignedHeader
        let signer: VerifiedIdentity
        do {
            header = try SignedHeader.parse(proof)
            signer = try header.verify(trust: store, at: time)
        } catch {
            throw ProofRefusal(message: "the signed header is refused (\(error.code)): \(error.description)")
        }
        try Self.check(root: header.root, of: file)
        let claim = ProvenClaim(size: header.layout.fileSize, name: header.name, signer: signer)
        let verified = Remembered(
            claim: claim, root: header.root,
            validFrom: max(header.signer.notValidBefore, store.authority.notValidBefore),
            validUntil: min(header.signer.notValidAfter, store.authority.notValidAfter, store.revocationList.nextUpdate)
        )
        memory.withLockedValue { memory in
            guard memory.generation == generation else { return }
            if memory.headers.count >= Self.capacity, memory.headers[key] == nil {
                memory.headers.remove(at: memory.headers.startIndex)
            }
            memory.headers[key] = verified
        }
        return claim
    }

    private static func check(root: [UInt8], of file: FileID) throws(ProofRefusal) {
        guard root == file.bytes else {
            throw ProofRefusal(message: "the signed header names root \(Hex.encode(root)), not \(file)")
        }
    }
}
