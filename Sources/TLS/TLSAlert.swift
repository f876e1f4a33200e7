/// TLS alert numbers (RFC 8446 §6.2) that carry meaning for a person, and what each means when
/// the other side sends it to us. Both engines use this table, so a refusal reads the same
/// whichever backend either side runs.
enum TLSAlert {
    static let badCertificate = 42
    static let unsupportedCertificate = 43
    static let certificateRevoked = 44
    static let certificateExpired = 45
    static let unknownCA = 48
    static let protocolVersion = 70
    static let certificateRequired = 116

    /// The alert we send when we refuse the other side's certificate for `failure`.
    static func alert(refusing failure: TLSError) -> Int {
        switch failure.validation?.code {
        case .revoked?: return certificateRevoked
        case .expired?, .revocationListExpired?: return certificateExpired
        case .unknownAuthority?: return unknownCA
        case .wrongRole?: return unsupportedCertificate
        default: return badCertificate
        }
    }

    /// What a fatal alert from the other side means.
    static func received(_ alert: Int) -> TLSError {
        switch alert {
        case certificateRevoked:
            return TLSError(.ourCertificateRefused, "the other side refused our certificate: revoked")
        case certificateExpired:
            return TLSError(.ourCertificateRefused, "the other side refused our certificate: expired (or its CRL expired)")
        case unknownCA:
            return TLSError(.ourCertificateRefused, "the other side refused our certificate: not issued by its CA")
        case unsupportedCertificate:
            return TLSError(.ourCertificateRefused, "the other side refused our certificate: wrong role for this connection")
        case badCertificate:
            return TLSError(.ourCertificateRefused, "the other side refused our certificate")
        case certificateRequired:
            return TLSError(.ourCertificateRefused, "the other side requires a certificate and we sent none")
        case protocolVersion:
            return TLSError(.protocolVersion, "the other side does not speak TLS 1.3, the only version we accept")
        default:
            return TLSError(.protocolFailure, "the other side ended the connection with TLS alert \(alert)")
        }
    }
}
