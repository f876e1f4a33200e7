import PKI

/// Why a TLS connection failed, phrased for the person reading the log. Equality compares only
/// the code, so callers and tests match on codes while the reasons stay free to improve.
public struct TLSError: Error, Equatable, CustomStringConvertible, Sendable {
    /// A stable name for one kind of failure.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let description: String

        /// We refused the other side's certificate; ``TLSError/validation`` says why.
        public static let peerCertificateRefused = Code(description: "peer-certificate-refused")
        /// The other side sent no certificate although one is required.
        public static let noPeerCertificate = Code(description: "no-peer-certificate")
        /// The other side refused our certificate (revoked, expired, unknown CA, wrong role...).
        public static let ourCertificateRefused = Code(description: "our-certificate-refused")
        /// The tracker's certificate does not name the address we dialed.
        public static let nameMismatch = Code(description: "name-mismatch")
        /// The other side does not speak TLS 1.3.
        public static let protocolVersion = Code(description: "protocol-version")
        /// The handshake did not finish in time.
        public static let handshakeTimeout = Code(description: "handshake-timeout")
        /// The connection closed before the handshake finished.
        public static let closedDuringHandshake = Code(description: "closed-during-handshake")
        /// The connection ended without close_notify: what arrived last may be cut short.
        public static let uncleanShutdown = Code(description: "unclean-shutdown")
        /// Any other TLS failure (malformed records, bad MAC, internal errors).
        public static let protocolFailure = Code(description: "protocol-failure")
        /// Our own certificate, key or settings could not be loaded.
        public static let configuration = Code(description: "configuration")
    }

    public let code: Code
    public let reason: String
    /// For ``Code/peerCertificateRefused``: the validation policy's verdict.
    public let validation: ValidationError?

    public init(_ code: Code, _ reason: String, validation: ValidationError? = nil) {
        self.code = code
        self.reason = reason
        self.validation = validation
    }

    public var description: String { reason }

    public static func == (lhs: TLSError, rhs: TLSError) -> Bool { lhs.code == rhs.code }
}
