import Foundation
import PKI
import SwiftASN1
import X509

#if canImport(Glibc)
import Glibc
#endif

/// What an engine learned about the other side: its identity once accepted, or why it was refused.
struct PeerVerdict {
    var identity: VerifiedIdentity?
    var failure: TLSError?

    /// Judges the other side's leaf certificate under `configuration` and records the outcome.
    mutating func judge(leafDER: [UInt8], configuration: TLSConfiguration, side: TLSSide) -> Bool {
        switch PeerCertificateCheck.verify(leafDER: leafDER, trust: configuration.trust.current, role: configuration.peerRole, side: side) {
        case .success(let verified):
            identity = verified
            return true
        case .failure(let error):
            failure = error
            return false
        }
    }
}

/// What every backend does with the certificate the other side presented: our one validation
/// policy (``TrustStore/validate(_:as:at:)``), then, for a client that dialed a tracker, the
/// check that the certificate names the dialed address.
enum PeerCertificateCheck {
    static func verify(leafDER: [UInt8], trust: TrustStore, role: Role, side: TLSSide) -> Result<VerifiedIdentity, TLSError> {
        let certificate: Certificate
        do {
            certificate = try Certificate(derEncoded: leafDER)
        } catch {
            return .failure(TLSError(.peerCertificateRefused, "the other side's certificate cannot be read: \(error)"))
        }
        let identity: VerifiedIdentity
        do {
            identity = try trust.validate(certificate, as: role)
        } catch {
            return .failure(TLSError(.peerCertificateRefused, "refused the other side's certificate: \(error.reason)", validation: error))
        }
        if case .client(let dialedHost?) = side, role == .tracker, !names(certificate, host: dialedHost) {
            return .failure(TLSError(.nameMismatch, "the certificate of tracker '\(identity.name)' does not name \(dialedHost), the address we dialed"))
        }
        return .success(identity)
    }

    /// Whether the certificate's subjectAltName lists `host` (an exact IP address or DNS name).
    static func names(_ certificate: Certificate, host: String) -> Bool {
        guard let alternativeNames = try? certificate.extensions.subjectAlternativeNames else { return false }
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        if let address = ipAddressBytes(bare) {
            return alternativeNames.contains { name in
                if case .ipAddress(let bytes) = name { return Array(bytes.bytes) == address }
                return false
            }
        }
        return alternativeNames.contains { name in
            if case .dnsName(let dnsName) = name { return dnsName.lowercased() == bare.lowercased() }
            return false
        }
    }

    private static func ipAddressBytes(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }
}
