import COpenSSL
import PKI

/// An OpenSSL `SSL_CTX` built from a ``TLSConfiguration``: our certificate and key, TLS 1.3
/// only, a certificate required from the other side, no session resumption (every connection
/// is judged afresh against the current CRL), and certificate checks handed to our own policy.
public final class OpenSSLContext: TLSContext, @unchecked Sendable {
    let context: OpaquePointer
    public let configuration: TLSConfiguration

    public init(configuration: TLSConfiguration) throws(TLSError) {
        guard let context = SSL_CTX_new(TLS_method()) else { throw OpenSSLErrors.configuration("cannot create an SSL context") }
        self.context = context
        self.configuration = configuration
        guard mt_SSL_CTX_set_min_proto_version(context, TLS1_3_VERSION) == 1,
              mt_SSL_CTX_set_max_proto_version(context, TLS1_3_VERSION) == 1
        else { throw OpenSSLErrors.configuration("cannot restrict the context to TLS 1.3") }
        SSL_CTX_set_options(context, mt_SSL_OP_NO_TICKET)
        _ = SSL_CTX_set_num_tickets(context, 0)
        _ = mt_SSL_CTX_set_session_cache_mode(context, Int(SSL_SESS_CACHE_OFF))
        SSL_CTX_set_verify(context, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nil)
        SSL_CTX_set_cert_verify_callback(context, openSSLCertificateVerifyCallback, nil)
        try load(configuration.identity)
    }

    deinit {
        SSL_CTX_free(context)
    }

    public func makeEngine(side: TLSSide) throws(TLSError) -> TLSEngine {
        try OpenSSLEngine(context: self, side: side)
    }

    private func load(_ identity: SigningIdentity) throws(TLSError) {
        let certificatePEM: String
        let keyPEM: String
        do {
            certificatePEM = try identity.certificate.serializeAsPEM().pemString
            keyPEM = try identity.privateKey.serializeAsPEM().pemString
        } catch {
            throw OpenSSLErrors.configuration("cannot encode our certificate and key: \(error)")
        }
        guard let certificate = withMemoryBIO(certificatePEM, { PEM_read_bio_X509($0, nil, nil, nil) }),
              let key = withMemoryBIO(keyPEM, { PEM_read_bio_PrivateKey($0, nil, nil, nil) })
        else { throw OpenSSLErrors.configuration("OpenSSL cannot read our certificate or key") }
        defer {
            X509_free(certificate)
            EVP_PKEY_free(key)
        }
        guard SSL_CTX_use_certificate(context, certificate) == 1, SSL_CTX_use_PrivateKey(context, key) == 1,
              SSL_CTX_check_private_key(context) == 1
        else { throw OpenSSLErrors.configuration("OpenSSL refused our certificate and key") }
    }

    private func withMemoryBIO<T>(_ text: String, _ body: (OpaquePointer) -> T?) -> T? {
        let bytes = Array(text.utf8)
        return bytes.withUnsafeBytes { buffer -> T? in
            guard let bio = BIO_new_mem_buf(buffer.baseAddress, Int32(buffer.count)) else { return nil }
            defer { BIO_free(bio) }
            return body(bio)
        }
    }
}

/// A ``TLSEngine`` on the system's libssl over a pair of memory BIOs.
public final class OpenSSLEngine: TLSEngine {
    private let ssl: OpaquePointer
    private let fromNetwork: OpaquePointer
    private let toNetwork: OpaquePointer
    private let context: OpenSSLContext
    private let side: TLSSide
    private var verdict = PeerVerdict()

    public var peerIdentity: VerifiedIdentity? { verdict.identity }

    public init(context: OpenSSLContext, side: TLSSide) throws(TLSError) {
        guard let ssl = SSL_new(context.context),
              let fromNetwork = BIO_new(BIO_s_mem()), let toNetwork = BIO_new(BIO_s_mem())
        else { throw OpenSSLErrors.configuration("cannot create a TLS session") }
        mt_BIO_set_mem_eof_return(fromNetwork, -1)
        mt_BIO_set_mem_eof_return(toNetwork, -1)
        SSL_set_bio(ssl, fromNetwork, toNetwork)
        self.ssl = ssl
        self.fromNetwork = fromNetwork
        self.toNetwork = toNetwork
        self.context = context
        self.side = side
        if case .server = side { SSL_set_accept_state(ssl) } else { SSL_set_connect_state(ssl) }
        SSL_set_ex_data(ssl, 0, Unmanaged.passUnretained(self).toOpaque())
    }

    deinit {
        SSL_free(ssl)
    }

    public func consumeCiphertext(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        // A memory BIO grows to take everything; it fails only when memory runs out.
        precondition(BIO_write(fromNetwork, bytes.baseAddress, Int32(bytes.count)) == Int32(bytes.count), "memory BIO refused input")
    }

    public func handshake() -> TLSStep<VerifiedIdentity> {
        ERR_clear_error()
        let result = SSL_do_handshake(ssl)
        guard result == 1 else { return failure(result) }
        guard let identity = peerIdentity else {
            return .failed(TLSError(.noPeerCertificate, "the other side presented no certificate"))
        }
        return .complete(identity)
    }

    public func readPlaintext(into buffer: UnsafeMutableRawBufferPointer) -> TLSStep<Int> {
        ERR_clear_error()
        let result = SSL_read(ssl, buffer.baseAddress, Int32(min(buffer.count, Int(Int32.max))))
        if result > 0 { return .complete(Int(result)) }
        if SSL_get_error(ssl, result) == SSL_ERROR_ZERO_RETURN { return .complete(0) }
        return failure(result)
    }

    public func writePlaintext(_ bytes: UnsafeRawBufferPointer) -> TLSStep<Void> {
        guard bytes.count > 0 else { return .complete(()) }
        ERR_clear_error()
        let result = SSL_write(ssl, bytes.baseAddress, Int32(bytes.count))
        if result == Int32(bytes.count) { return .complete(()) }
        let step: TLSStep<Void> = failure(result)
        return step
    }

    public var pendingCiphertext: Int { Int(BIO_ctrl_pending(toNetwork)) }

    public func drainCiphertext(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        let count = min(buffer.count, pendingCiphertext)
        guard count > 0 else { return 0 }
        return Int(max(0, BIO_read(toNetwork, buffer.baseAddress, Int32(count))))
    }

    public func shutdown() {
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
    }

    /// Called from OpenSSL's verification callback with the other side's leaf certificate.
    fileprivate func verifyPeer(leafDER: [UInt8]) -> Bool {
        verdict.judge(leafDER: leafDER, configuration: context.configuration, side: side)
    }

    /// The verification error code whose alert tells the other side why we refused it.
    fileprivate var verificationErrorCode: Int32 {
        switch verdict.failure?.validation?.code {
        case .revoked?: return X509_V_ERR_CERT_REVOKED
        case .expired?: return X509_V_ERR_CERT_HAS_EXPIRED
        case .notYetValid?: return X509_V_ERR_CERT_NOT_YET_VALID
        case .unknownAuthority?: return X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
        case .wrongRole?, .badProfile?: return X509_V_ERR_INVALID_PURPOSE
        case .revocationListExpired?: return X509_V_ERR_CRL_HAS_EXPIRED
        default: return verdict.failure?.code == .nameMismatch ? X509_V_ERR_HOSTNAME_MISMATCH : X509_V_ERR_APPLICATION_VERIFICATION
        }
    }

    private func failure<T>(_ result: Int32) -> TLSStep<T> {
        switch SSL_get_error(ssl, result) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            return .incomplete
        default:
            if let refusal = verdict.failure { return .failed(refusal) }
            return .failed(OpenSSLErrors.translate(ERR_get_error()))
        }
    }
}

/// The C function OpenSSL calls instead of its own chain verification: it hands the leaf to
/// ``OpenSSLEngine/verifyPeer(leafDER:)`` and records the reason for the alert on refusal.
private let openSSLCertificateVerifyCallback: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?) -> Int32 = { storeContext, _ in
    guard let storeContext,
          let sslPointer = X509_STORE_CTX_get_ex_data(storeContext, SSL_get_ex_data_X509_STORE_CTX_idx()),
          let enginePointer = SSL_get_ex_data(OpaquePointer(sslPointer), 0),
          let leaf = X509_STORE_CTX_get0_cert(storeContext)
    else { return 0 }
    let engine = Unmanaged<OpenSSLEngine>.fromOpaque(enginePointer).takeUnretainedValue()
    let length = i2d_X509(leaf, nil)
    guard length > 0 else { return 0 }
    var der = [UInt8](repeating: 0, count: Int(length))
    _ = der.withUnsafeMutableBufferPointer { buffer in
        var cursor = buffer.baseAddress
        return i2d_X509(leaf, &cursor)
    }
    if engine.verifyPeer(leafDER: der) { return 1 }
    X509_STORE_CTX_set_error(storeContext, engine.verificationErrorCode)
    return 0
}

/// Turns OpenSSL's error queue into our typed errors, naming what the other side's alert meant.
enum OpenSSLErrors {
    static func configuration(_ reason: String) -> TLSError {
        TLSError(.configuration, "\(reason)\(detail(ERR_get_error()))")
    }

    static func translate(_ packed: UInt) -> TLSError {
        let reason = Int32(packed & 0x7FFFFF)
        switch reason {
        case SSL_AD_REASON_OFFSET..<(SSL_AD_REASON_OFFSET + 256):
            // OpenSSL reports a received alert as its number plus this offset.
            return TLSAlert.received(Int(reason - SSL_AD_REASON_OFFSET))
        case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
            return TLSError(.noPeerCertificate, "the other side presented no certificate; a certificate from our CA is required")
        case SSL_R_UNSUPPORTED_PROTOCOL, SSL_R_WRONG_VERSION_NUMBER:
            return TLSError(.protocolVersion, "the other side does not speak TLS 1.3, the only version we accept")
        default:
            return TLSError(.protocolFailure, "TLS failed\(detail(packed))")
        }
    }

    private static func detail(_ packed: UInt) -> String {
        guard packed != 0 else { return "" }
        var text = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(packed, &text, text.count)
        return ": " + String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
