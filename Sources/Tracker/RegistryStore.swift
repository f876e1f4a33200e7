import Foundation
import PKI
import Wire

/// Where a tracker keeps which peers hold which file: the operations ``TrackerServer`` needs, with
/// the semantics of the embedded ``Registry`` (per-signer claims, one holder per certificate per
/// file, a per-certificate quota, withdraw and allow, expiry after the time to live).
///
/// A change returns only once it is durable; a store that cannot reach its storage throws
/// ``RegistryUnavailable``, which the tracker answers with `ERR UNAVAILABLE`. Every time is the
/// caller's clock (`now`), so replicas on one shared store must keep their clocks in step.
public protocol RegistryStore: Sendable {
    /// Where the registry lives, for the start line: a path or a database address (no password).
    var location: String { get }
    /// Number of files and of holder entries.
    var counts: (files: Int, holders: Int) { get async throws }
    /// Records `identity` at `address` as the holder of `file` under the claim of `signer`.
    func share(
        file: FileID, size: UInt64, name: String, signer: VerifiedIdentity, address: String, identity: VerifiedIdentity, now: Date
    ) async throws -> RegistryOutcome
    /// The live holders of a file (at most ``TrackerResponse/maximumHolders``, at random), or why there are none.
    func holders(of file: FileID, excluding excluded: Set<String>, now: Date) async throws -> TrackerResponse
    /// Withdraws a file (an admin, or a signer its claim) or the caller's own holder entry.
    func remove(file: FileID, address: String, identity: VerifiedIdentity, isAdmin: Bool, now: Date) async throws -> RegistryOutcome
    /// Lets a withdrawn file be shared again.
    func allow(file: FileID, now: Date) async throws -> RegistryOutcome
    /// Marks every entry of the caller at `address` as seen now.
    func heartbeat(address: String, identity: VerifiedIdentity, now: Date) async throws -> RegistryOutcome
    /// Drops every entry of the caller at `address`.
    func leave(address: String, identity: VerifiedIdentity, now: Date) async throws -> RegistryOutcome
    /// Drops holders silent for longer than the time to live and forgets files nobody held for as
    /// long; returns how many holders this call dropped (each is dropped by one call only).
    func expire(now: Date) async throws -> Int
    /// Finishes the changes in flight and closes the storage within `seconds`; false if it had to
    /// cut them short. The store answers nothing afterwards.
    func close(within seconds: Double) async -> Bool
}

/// The registry's storage cannot be reached now (a database down or out of reach): nothing was
/// recorded, and the peer should try again shortly or use another tracker.
public struct RegistryUnavailable: Error, CustomStringConvertible {
    public let reason: String

    public init(_ reason: String) {
        self.reason = reason
    }

    public var description: String { reason }
}

extension Registry: RegistryStore {
    public var location: String { path }
}
