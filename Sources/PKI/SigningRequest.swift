import Crypto
import Foundation
import SwiftASN1
import X509

/// A PKCS#10 certificate signing request in our profile: what a machine sends the CA so that its
/// private key never leaves it (`mtca request` makes one, `mtca sign` reads one).
///
/// The request carries the subject of the certificate asked for (`CN` name, `OU` role, one `O`
/// per group), a P-256 public key, and, for a tracker only, one extensionRequest attribute holding
/// nothing but its subjectAltName (DNS names and IP addresses). Anything else is refused when read.
/// The lifetime is not part of the request: the CA chooses it.
public struct SigningRequest: Sendable {
    public let name: String
    public let role: Role
    public let groups: [String]
    public let dnsNames: [String]
    public let ipAddresses: [String]
    public let publicKey: Certificate.PublicKey
    /// The request as PEM text (`-----BEGIN CERTIFICATE REQUEST-----`), the form `openssl req` reads.
    public let pemEncoded: String

    /// Largest request file accepted when reading one.
    public static let maximumFileSize = 16 * 1024

    /// A request for the identity `request` describes (its lifetime is ignored), signed with `key`.
    public init(for request: IssueRequest, key: Certificate.PrivateKey) throws {
        try CertificateAuthority.check(request)
        var attributes = CertificateSigningRequest.Attributes()
        let alternativeNames = try CertificateProfile.alternativeNames(for: request)
        if !alternativeNames.isEmpty {
            let extensions = try Certificate.Extensions { SubjectAlternativeNames(alternativeNames) }
            attributes.insert(try CertificateSigningRequest.Attribute(ExtensionRequest(extensions: extensions)))
        }
        let csr = try CertificateSigningRequest(
            version: .v1, subject: CertificateProfile.subject(for: request), privateKey: key,
            attributes: attributes, signatureAlgorithm: CertificateProfile.signatureAlgorithm
        )
        self.init(request, publicKey: key.publicKey, pemEncoded: try csr.serializeAsPEM().pemString + "\n")
    }

    private init(_ request: IssueRequest, publicKey: Certificate.PublicKey, pemEncoded: String) {
        name = request.name
        role = request.role
        groups = request.groups
        dnsNames = request.dnsNames
        ipAddresses = request.ipAddresses
        self.publicKey = publicKey
        self.pemEncoded = pemEncoded
    }

    /// Reads a request strictly: one PEM block, canonical DER, version 1, a P-256 key that made the
    /// request's own signature, and a subject and attributes exactly as our profile allows for the
    /// role asked for. Every refusal is a ``PKIError`` with the code `invalidRequest` saying why.
    public init(pemEncoded text: String) throws {
        guard text.utf8.count <= Self.maximumFileSize else {
            throw Self.refusal("it is larger than \(Self.maximumFileSize) bytes")
        }
        guard text.components(separatedBy: "-----BEGIN ").count == 2 else {
            throw Self.refusal("it must hold exactly one PEM block")
        }
        let csr: CertificateSigningRequest
        do {
            let document = try PEMDocument(pemString: text)
            guard document.discriminator == CertificateSigningRequest.defaultPEMDiscriminator else {
                throw Self.refusal("it holds a \(document.discriminator), not a CERTIFICATE REQUEST")
            }
            csr = try CertificateSigningRequest(derEncoded: document.derBytes)
            guard try CertificateProfile.derEncoding(of: csr) == document.derBytes else {
                throw Self.refusal("its DER encoding is not canonical")
            }
        } catch let error as PKIError {
            throw error
        } catch {
            throw Self.refusal("it is not a readable PKCS#10 request (\(error))")
        }
        guard csr.version == .v1 else { throw Self.refusal("its version is not 1") }
        guard csr.signatureAlgorithm == CertificateProfile.signatureAlgorithm else {
            throw Self.refusal("it is signed with \(csr.signatureAlgorithm), not ECDSA with SHA-256")
        }
        guard P256.Signing.PublicKey(csr.publicKey) != nil else { throw Self.refusal("its key is not an ECDSA P-256 key") }
        guard csr.publicKey.isValidSignature(csr.signature, for: csr) else {
            throw Self.refusal("its signature does not match its content (damaged or altered on the way)")
        }
        let subject: (name: String, role: Role, groups: [String])
        do {
            subject = try CertificateProfile.subjectIdentity(of: csr.subject)
        } catch {
            throw Self.refusal(error.reason)
        }
        let alternativeNames = try Self.alternativeNames(in: csr.attributes)
        var dnsNames: [String] = []
        var ipAddresses: [String] = []
        for alternativeName in alternativeNames {
            switch alternativeName {
            case .dnsName(let dnsName):
                dnsNames.append(dnsName)
            case .ipAddress(let bytes):
                guard let address = IPAddress.text(of: Array(bytes.bytes)) else {
                    throw Self.refusal("it names an IP address that is neither 4 nor 16 bytes long")
                }
                ipAddresses.append(address)
            default:
                throw Self.refusal("it asks for a subjectAltName other than a DNS name or IP address (\(alternativeName))")
            }
        }
        switch subject.role {
        case .peer:
            guard alternativeNames.isEmpty else {
                throw Self.refusal("a peer certificate carries no DNS names or IP addresses, but the request asks for \((dnsNames + ipAddresses).joined(separator: ", "))")
            }
        case .tracker:
            guard subject.groups.isEmpty else {
                throw Self.refusal("a tracker certificate carries no groups, but the request asks for \(subject.groups.joined(separator: ", "))")
            }
            guard !alternativeNames.isEmpty else {
                throw Self.refusal("a tracker request must name the DNS names or IP addresses peers dial")
            }
        }
        let request = IssueRequest(
            name: subject.name, role: subject.role, groups: subject.groups,
            dnsNames: dnsNames, ipAddresses: ipAddresses, days: CertificateAuthority.defaultLeafDays
        )
        do {
            try CertificateAuthority.check(request)
        } catch let error as PKIError {
            throw Self.refusal(error.reason)
        }
        self.init(request, publicKey: csr.publicKey, pemEncoded: text)
    }

    /// What the CA issues for this request, valid for `days`.
    public func issueRequest(days: Int) -> IssueRequest {
        IssueRequest(name: name, role: role, groups: groups, dnsNames: dnsNames, ipAddresses: ipAddresses, days: days)
    }

    /// The names of a tracker request: the attributes may hold one extensionRequest, and it nothing
    /// but a non-critical subjectAltName.
    private static func alternativeNames(in attributes: CertificateSigningRequest.Attributes) throws -> [GeneralName] {
        guard !attributes.isEmpty else { return [] }
        guard attributes.count == 1, let attribute = attributes.first,
              attribute.oid == .CSRAttributes.extensionRequest, attribute.values.count == 1
        else {
            throw refusal("it carries attributes other than one extension request (\(attributes.map { "\($0.oid)" }.joined(separator: ", ")))")
        }
        let extensions: Certificate.Extensions
        do {
            extensions = try ExtensionRequest(attribute).extensions
        } catch {
            throw refusal("its extension request cannot be read (\(error))")
        }
        guard extensions.count == 1, let only = extensions.first, only.oid == .X509ExtensionID.subjectAlternativeName, !only.critical else {
            throw refusal("it asks for extensions other than a subjectAltName (\(extensions.map { "\($0.oid)" }.joined(separator: ", "))); the CA sets every other extension itself")
        }
        do {
            return Array(try SubjectAlternativeNames(only))
        } catch {
            throw refusal("its subjectAltName cannot be read (\(error))")
        }
    }

    private static func refusal(_ reason: String) -> PKIError {
        PKIError(.invalidRequest, "the certificate request was refused: \(reason)")
    }
}
