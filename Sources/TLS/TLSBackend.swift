import NIOConcurrencyHelpers
import PKI

/// One endpoint's TLS settings prepared for a backend, from which each connection gets its engine.
public protocol TLSContext: AnyObject, Sendable {
    var configuration: TLSConfiguration { get }
    /// A fresh engine for one connection.
    func makeEngine(side: TLSSide) throws(TLSError) -> TLSEngine
}

/// The TLS libraries this build can use. OpenSSL is always there; GnuTLS only in a build with
/// the `GnuTLS` package trait (`swift build --traits GnuTLS`).
public enum TLSBackend: String, Sendable, CaseIterable, CustomStringConvertible {
    case openssl
    case gnutls

    /// The backends compiled into this build.
    public static var available: [TLSBackend] {
        #if GnuTLS
        return [.openssl, .gnutls]
        #else
        return [.openssl]
        #endif
    }

    public var description: String { rawValue }

    /// The backend called `name`, if this build has it; otherwise an error naming the choices.
    public static func named(_ name: String) throws(TLSError) -> TLSBackend {
        guard let backend = TLSBackend(rawValue: name), available.contains(backend) else {
            throw TLSError(.configuration, "TLS backend '\(name)' is not in this build; use \(available.map(\.rawValue).joined(separator: " or "))")
        }
        return backend
    }

    /// Prepares `configuration` for this backend.
    public func makeContext(_ configuration: TLSConfiguration) throws(TLSError) -> TLSContext {
        switch self {
        case .openssl:
            return try OpenSSLContext(configuration: configuration)
        case .gnutls:
            #if GnuTLS
            return try GnuTLSContext(configuration: configuration)
            #else
            throw TLSError(.configuration, "this build has no GnuTLS backend; rebuild with 'swift build --traits GnuTLS' or use openssl")
            #endif
        }
    }
}

/// A TLS context whose own certificate and key can be replaced while it serves: every new
/// connection gets its engine from the context in force, and connections already open keep the
/// one they started with. Trackers and peers renew their certificate in place with it.
public final class RenewableTLSContext: TLSContext {
    private let backend: TLSBackend
    private let inForce: NIOLockedValueBox<TLSContext>

    /// Prepares `configuration` for `backend`.
    public init(backend: TLSBackend, configuration: TLSConfiguration) throws(TLSError) {
        self.backend = backend
        inForce = NIOLockedValueBox(try backend.makeContext(configuration))
    }

    public var configuration: TLSConfiguration { inForce.withLockedValue { $0.configuration } }

    public func makeEngine(side: TLSSide) throws(TLSError) -> TLSEngine {
        try inForce.withLockedValue { $0 }.makeEngine(side: side)
    }

    /// Puts `identity` in force for every later connection; the old one stays if the backend refuses it.
    public func replaceIdentity(with identity: SigningIdentity) throws(TLSError) {
        var renewed = configuration
        renewed.identity = identity
        let context = try backend.makeContext(renewed)
        inForce.withLockedValue { $0 = context }
    }
}
