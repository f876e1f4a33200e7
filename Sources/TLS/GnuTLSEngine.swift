#if GnuTLS
import CGnuTLS
#if canImport(Glibc)
import Glibc
#endif
import PKI

/// GnuTLS credentials built from a ``TLSConfiguration``: our certificate and key, and the
/// other side's certificate handed to our own validation policy. Sessions are TLS 1.3 only and
/// servers require a client certificate, exactly as with OpenSSL.
public final class GnuTLSContext: TLSContext, @unchecked Sendable {
    let credentials: gnutls_certificate_credentials_t
    public let configuration: TLSConfiguration

    /// TLS 1.3 and nothing else.
    static let priorities = "NORMAL:-VERS-ALL:+VERS-TLS1.3"

    public init(configuration: TLSConfiguration) throws(TLSError) {
        var credentials: gnutls_certificate_credentials_t?
        guard gnutls_certificate_allocate_credentials(&credentials) == GNUTLS_E_SUCCESS, let credentials else {
            throw TLSError(.configuration, "GnuTLS cannot allocate credentials")
        }
        self.credentials = credentials
        self.configuration = configuration
        let certificatePEM: [UInt8]
        let keyPEM: [UInt8]
        do {
            certificatePEM = Array(try configuration.identity.certificate.serializeAsPEM().pemString.utf8)
            keyPEM = Array(try configuration.identity.privateKey.serializeAsPEM().pemString.utf8)
        } catch {
            throw TLSError(.configuration, "cannot encode our certificate and key: \(error)")
        }
        let result = certificatePEM.withUnsafeBytes { certificate in
            keyPEM.withUnsafeBytes { key in
                var certificateDatum = gnutls_datum_t(data: UnsafeMutablePointer(mutating: certificate.bindMemory(to: UInt8.self).baseAddress), size: UInt32(certificate.count))
                var keyDatum = gnutls_datum_t(data: UnsafeMutablePointer(mutating: key.bindMemory(to: UInt8.self).baseAddress), size: UInt32(key.count))
                return gnutls_certificate_set_x509_key_mem2(credentials, &certificateDatum, &keyDatum, GNUTLS_X509_FMT_PEM, nil, 0)
            }
        }
        guard result >= 0 else { throw GnuTLSErrors.configuration("GnuTLS refused our certificate and key", result) }
        gnutls_certificate_set_verify_function(credentials, gnuTLSVerifyCallback)
    }

    deinit {
        gnutls_certificate_free_credentials(credentials)
    }

    public func makeEngine(side: TLSSide) throws(TLSError) -> TLSEngine {
        try GnuTLSEngine(context: self, side: side)
    }
}

/// A ``TLSEngine`` on the system's GnuTLS, with its transport pointed at two in-memory queues.
public final class GnuTLSEngine: TLSEngine {
    private let session: gnutls_session_t
    private let context: GnuTLSContext
    private let side: TLSSide
    private var inbound = ByteQueue()
    private var outbound = ByteQueue()
    private var verdict = PeerVerdict()

    public var peerIdentity: VerifiedIdentity? { verdict.identity }

    public init(context: GnuTLSContext, side: TLSSide) throws(TLSError) {
        var session: gnutls_session_t?
        let flags = (side == .server ? GNUTLS_SERVER : GNUTLS_CLIENT).rawValue | GNUTLS_NONBLOCK.rawValue | GNUTLS_NO_TICKETS.rawValue
        guard gnutls_init(&session, flags) == GNUTLS_E_SUCCESS, let session else {
            throw TLSError(.configuration, "GnuTLS cannot create a session")
        }
        self.session = session
        self.context = context
        self.side = side
        let priority = gnutls_priority_set_direct(session, GnuTLSContext.priorities, nil)
        guard priority == GNUTLS_E_SUCCESS else { throw GnuTLSErrors.configuration("GnuTLS refused TLS 1.3-only priorities", priority) }
        guard gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, UnsafeMutableRawPointer(context.credentials)) == GNUTLS_E_SUCCESS else {
            throw TLSError(.configuration, "GnuTLS refused our credentials")
        }
        if side == .server { gnutls_certificate_server_set_request(session, GNUTLS_CERT_REQUIRE) }
        let me = Unmanaged.passUnretained(self).toOpaque()
        gnutls_session_set_ptr(session, me)
        gnutls_transport_set_ptr(session, me)
        gnutls_transport_set_push_function(session, gnuTLSPush)
        gnutls_transport_set_pull_function(session, gnuTLSPull)
        gnutls_transport_set_pull_timeout_function(session, gnuTLSPullTimeout)
    }

    deinit {
        gnutls_deinit(session)
    }

    public func consumeCiphertext(_ bytes: UnsafeRawBufferPointer) {
        inbound.append(bytes)
    }

    public func handshake() -> TLSStep<VerifiedIdentity> {
        let result = gnutls_handshake(session)
        guard result == GNUTLS_E_SUCCESS else { return failure(result) }
        guard let identity = peerIdentity else {
            return .failed(TLSError(.noPeerCertificate, "the other side presented no certificate"))
        }
        return .complete(identity)
    }

    public func readPlaintext(into buffer: UnsafeMutableRawBufferPointer) -> TLSStep<Int> {
        let result = gnutls_record_recv(session, buffer.baseAddress, buffer.count)
        if result >= 0 { return .complete(result) }
        return failure(Int32(result))
    }

    public func writePlaintext(_ bytes: UnsafeRawBufferPointer) -> TLSStep<Void> {
        var offset = 0
        while offset < bytes.count {
            // One call sends at most one record; the push function always takes it all.
            let result = gnutls_record_send(session, bytes.baseAddress! + offset, bytes.count - offset)
            guard result > 0 else { return failure(Int32(result)) }
            offset += result
        }
        return .complete(())
    }

    public var pendingCiphertext: Int { outbound.count }

    public func drainCiphertext(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        outbound.take(into: buffer)
    }

    public func shutdown() {
        _ = gnutls_bye(session, GNUTLS_SHUT_WR)
    }

    fileprivate func push(_ bytes: UnsafeRawBufferPointer) -> Int {
        outbound.append(bytes)
        return bytes.count
    }

    fileprivate func pull(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        guard inbound.count > 0 else {
            gnutls_transport_set_errno(session, EAGAIN)
            return -1
        }
        return inbound.take(into: buffer)
    }

    fileprivate var hasInbound: Bool { inbound.count > 0 }

    /// Called from GnuTLS's verification callback; returns whether the other side is accepted.
    fileprivate func verifyPeer() -> Bool {
        var count: UInt32 = 0
        guard let list = gnutls_certificate_get_peers(session, &count), count > 0 else {
            verdict.failure = TLSError(.noPeerCertificate, "the other side presented no certificate; a certificate from our CA is required")
            return false
        }
        let leaf = Array(UnsafeBufferPointer(start: list[0].data, count: Int(list[0].size)))
        return verdict.judge(leafDER: leaf, configuration: context.configuration, side: side)
    }

    private func failure<T>(_ result: Int32) -> TLSStep<T> {
        switch result {
        case GNUTLS_E_AGAIN, GNUTLS_E_INTERRUPTED:
            return .incomplete
        case _ where verdict.failure != nil:
            // GnuTLS leaves the alert to us: tell the other side why we refused it.
            let refusal = verdict.failure!
            _ = gnutls_alert_send(session, GNUTLS_AL_FATAL, gnutls_alert_description_t(UInt32(TLSAlert.alert(refusing: refusal))))
            return .failed(refusal)
        case GNUTLS_E_FATAL_ALERT_RECEIVED:
            return .failed(TLSAlert.received(Int(gnutls_alert_get(session).rawValue)))
        case GNUTLS_E_NO_CERTIFICATE_FOUND, GNUTLS_E_CERTIFICATE_REQUIRED:
            _ = gnutls_alert_send_appropriate(session, result)
            return .failed(TLSError(.noPeerCertificate, "the other side presented no certificate; a certificate from our CA is required"))
        case GNUTLS_E_UNSUPPORTED_VERSION_PACKET, GNUTLS_E_NO_PRIORITIES_WERE_SET, GNUTLS_E_UNKNOWN_CIPHER_SUITE, GNUTLS_E_NO_CIPHER_SUITES:
            // An older client offers only suites of older versions: answer as OpenSSL does.
            _ = gnutls_alert_send(session, GNUTLS_AL_FATAL, GNUTLS_A_PROTOCOL_VERSION)
            return .failed(TLSError(.protocolVersion, "the other side does not speak TLS 1.3, the only version we accept"))
        default:
            _ = gnutls_alert_send_appropriate(session, result)
            return .failed(GnuTLSErrors.failure(result))
        }
    }
}

private func engine(_ pointer: UnsafeMutableRawPointer?) -> GnuTLSEngine {
    Unmanaged<GnuTLSEngine>.fromOpaque(pointer!).takeUnretainedValue()
}

private let gnuTLSPush: @convention(c) (gnutls_transport_ptr_t?, UnsafeRawPointer?, Int) -> Int = { pointer, data, count in
    engine(pointer).push(UnsafeRawBufferPointer(start: data, count: count))
}

private let gnuTLSPull: @convention(c) (gnutls_transport_ptr_t?, UnsafeMutableRawPointer?, Int) -> Int = { pointer, data, count in
    engine(pointer).pull(into: UnsafeMutableRawBufferPointer(start: data, count: count))
}

/// Never blocks: reports whether bytes are waiting, as GnuTLS asks before a read.
private let gnuTLSPullTimeout: @convention(c) (gnutls_transport_ptr_t?, UInt32) -> Int32 = { pointer, _ in
    engine(pointer).hasInbound ? 1 : 0
}

private let gnuTLSVerifyCallback: @convention(c) (gnutls_session_t?) -> Int32 = { session in
    guard let session, let pointer = gnutls_session_get_ptr(session) else { return GNUTLS_E_CERTIFICATE_ERROR }
    return engine(pointer).verifyPeer() ? 0 : GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR
}

/// GnuTLS error codes as our typed errors.
enum GnuTLSErrors {
    static func configuration(_ reason: String, _ code: Int32) -> TLSError {
        TLSError(.configuration, "\(reason): \(String(cString: gnutls_strerror(code)))")
    }

    static func failure(_ code: Int32) -> TLSError {
        TLSError(.protocolFailure, "TLS failed: \(String(cString: gnutls_strerror(code)))")
    }
}
#endif
