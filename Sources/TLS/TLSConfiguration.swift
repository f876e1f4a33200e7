import PKI
import NIOConcurrencyHelpers

/// Which side of a connection an engine plays.
public enum TLSSide: Sendable, Equatable {
    case server
    /// A client that dialed `host` (an IP address or DNS name). When the other side must be a
    /// tracker, its certificate's subjectAltName must name that host.
    case client(dialedHost: String?)
}

/// The CA certificate and CRL that judge the other side, replaceable while connections are live:
/// servers call ``replace(with:)`` on SIGHUP and every later handshake uses the new lists.
public final class TrustSource: Sendable {
    private let store: NIOLockedValueBox<(trust: TrustStore, generation: UInt64)>

    public init(_ trust: TrustStore) {
        store = NIOLockedValueBox((trust, 0))
    }

    /// The trust store in force now.
    public var current: TrustStore { store.withLockedValue { $0.trust } }

    /// The trust store in force now and its generation, which every ``replace(with:)`` advances:
    /// whatever was judged under an earlier generation must be judged again.
    public var currentWithGeneration: (trust: TrustStore, generation: UInt64) { store.withLockedValue { $0 } }

    /// Puts a freshly loaded CA certificate and CRL in force.
    public func replace(with trust: TrustStore) {
        store.withLockedValue { $0 = (trust, $0.generation + 1) }
    }
}

/// The TLS policy of one endpoint: who we are, what judges the other side, which role the other
/// side must have, and how long a handshake may take. TLS 1.3 only, mutual authentication
/// always, trust anchored in our CA alone, never in the system's store.
public struct TLSConfiguration: Sendable {
    public var identity: SigningIdentity
    public var trust: TrustSource
    /// The role the other side's certificate must carry.
    public var peerRole: Role
    /// Seconds a handshake may take before the connection is dropped.
    public var handshakeTimeoutSeconds: Int64

    public static let defaultHandshakeTimeoutSeconds: Int64 = 10

    public init(identity: SigningIdentity, trust: TrustSource, peerRole: Role, handshakeTimeoutSeconds: Int64 = defaultHandshakeTimeoutSeconds) {
        self.identity = identity
        self.trust = trust
        self.peerRole = peerRole
        self.handshakeTimeoutSeconds = handshakeTimeoutSeconds
    }
}
