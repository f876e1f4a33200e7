import FileIO
import Foundation
import X509

/// The one certificate-validation policy of MiniTorrent: a certificate is accepted only if our CA
/// signed it, it is inside its validity period, the CA's current revocation list does not name it,
/// it follows our profile, and it has the role the caller expects. TLS handshakes (both backends)
/// and `.mtorrent` signer checks all call ``validate(_:as:at:)``, so they cannot drift apart.
public struct TrustStore: Sendable {
    public let authority: Certificate
    public let revocationList: RevocationList

    /// Largest certificate file accepted when reading one.
    public static let maximumCertificateFileSize = 64 * 1024

    /// A store over a CA certificate and a revocation list that the CA signed.
    public init(authority: Certificate, revocationList: RevocationList) throws(ValidationError) {
        guard revocationList.isSigned(by: authority) else {
            throw ValidationError(.revocationListInvalid, "the revocation list is not signed by the CA '\(authority.subject)'")
        }
        self.authority = authority
        self.revocationList = revocationList
    }

    /// Loads `ca.crt` and `crl.pem` from a PKI folder.
    public static func load(from layout: PKILayout) throws -> TrustStore {
        let authority = try loadCertificate(at: layout.authorityCertificate)
        let crlText = try FileIO.readText(layout.revocationList, limit: RevocationList.maximumSize)
        let crl: RevocationList
        do {
            crl = try RevocationList(pemEncoded: crlText)
        } catch {
            throw ValidationError(.revocationListInvalid, "\(layout.revocationList) is not a readable CRL: \(error)")
        }
        return try TrustStore(authority: authority, revocationList: crl)
    }

    /// How far in the future an offered revocation list's thisUpdate may lie (clocks differ).
    public static let clockSkew: TimeInterval = 300

    /// This store with `newer` in force, if our CA signed it, it is current at `time`, and its CRL
    /// number is higher than the one in force; otherwise says which of those it fails. Peers judge
    /// every revocation list a tracker hands them with it.
    public func adopting(_ newer: RevocationList, at time: Date = Date()) throws(ValidationError) -> TrustStore {
        let candidate = try TrustStore(authority: authority, revocationList: newer)
        guard newer.thisUpdate <= time + Self.clockSkew, time <= newer.nextUpdate else {
            throw ValidationError(
                .revocationListExpired,
                "revocation list number \(newer.number) is not current (issued \(newer.thisUpdate), valid until \(newer.nextUpdate))"
            )
        }
        guard newer.number > revocationList.number else {
            throw ValidationError(.revocationListNotNewer, "revocation list number \(newer.number) is not newer than number \(revocationList.number) in force")
        }
        return candidate
    }

    /// Reads one PEM certificate file.
    public static func loadCertificate(at path: String) throws -> Certificate {
        let text = try FileIO.readText(path, limit: maximumCertificateFileSize)
        do {
            return try Certificate(pemEncoded: text)
        } catch {
            throw PKIError(.badFile, "\(path) is not a PEM certificate: \(error)")
        }
    }

    /// Accepts `certificate` as an identity of `role` at `time`, or says exactly why not.
    public func validate(_ certificate: Certificate, as role: Role, at time: Date = Date()) throws(ValidationError) -> VerifiedIdentity {
        guard certificate.issuer == authority.subject,
              authority.publicKey.isValidSignature(certificate.signature, for: certificate)
        else {
            throw ValidationError(.unknownAuthority, "the certificate of '\(certificate.subject)' was not issued by our CA '\(authority.subject)'")
        }
        guard time >= authority.notValidBefore, time <= authority.notValidAfter else {
            throw ValidationError(.authorityExpired, "our CA certificate is not valid at \(time) (valid \(authority.notValidBefore) to \(authority.notValidAfter))")
        }
        let subject = try CertificateProfile.subjectIdentity(of: certificate)
        guard time >= certificate.notValidBefore else {
            throw ValidationError(.notYetValid, "the certificate of '\(subject.name)' is not valid before \(certificate.notValidBefore)")
        }
        guard time <= certificate.notValidAfter else {
            throw ValidationError(.expired, "the certificate of '\(subject.name)' expired on \(certificate.notValidAfter)")
        }
        guard time <= revocationList.nextUpdate else {
            throw ValidationError(
                .revocationListExpired,
                "the CA's revocation list expired on \(revocationList.nextUpdate); renew it with 'mtca crl' and copy crl.pem to every machine"
            )
        }
        if let entry = revocationList.entry(for: certificate.serialNumber) {
            throw ValidationError(.revoked, "the certificate of '\(subject.name)' was revoked on \(entry.revokedAt) (\(entry.reason.rawValue))")
        }
        try Self.checkLeafUsages(certificate, name: subject.name)
        guard subject.role == role else {
            throw ValidationError(.wrongRole, "'\(subject.name)' holds a \(subject.role) certificate where a \(role) is required")
        }
        let fingerprint: String
        do {
            fingerprint = try CertificateProfile.fingerprint(of: certificate)
        } catch {
            throw ValidationError(.badProfile, "the certificate of '\(subject.name)' cannot be re-encoded: \(error)")
        }
        return VerifiedIdentity(
            name: subject.name, role: subject.role, groups: subject.groups,
            fingerprint: fingerprint, serial: Hex.encode(certificate.serialNumber.bytes)
        )
    }

    /// Whether this store's revocation list names the certificate `identity` was read from (an
    /// identity whose serial cannot be read counts as revoked). Servers ask it for every live
    /// connection after loading a new CRL.
    public func revokes(_ identity: VerifiedIdentity) -> Bool {
        guard let serial = Hex.decode(identity.serial) else { return true }
        return revocationList.entry(for: Certificate.SerialNumber(bytes: serial)) != nil
    }

    private static func checkLeafUsages(_ certificate: Certificate, name: String) throws(ValidationError) {
        let extensions = certificate.extensions
        do {
            guard case .notCertificateAuthority = try extensions.basicConstraints else {
                throw ValidationError(.badProfile, "the certificate of '\(name)' is not marked CA:FALSE")
            }
            guard try extensions.keyUsage?.digitalSignature == true else {
                throw ValidationError(.badProfile, "the certificate of '\(name)' does not allow digital signatures")
            }
            let usages = try extensions.extendedKeyUsage
            guard let usages, usages.contains(.serverAuth), usages.contains(.clientAuth) else {
                throw ValidationError(.badProfile, "the certificate of '\(name)' lacks the serverAuth and clientAuth usages")
            }
        } catch let error as ValidationError {
            throw error
        } catch {
            throw ValidationError(.badProfile, "the certificate of '\(name)' has a malformed extension: \(error)")
        }
    }
}
