import Crypto
import Foundation
import SwiftASN1
import X509

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The shape of every certificate `mtca` issues, and how a verifier reads an identity back
/// from a certificate alone.
///
/// Subject of a leaf: `CN` = name, exactly one `OU` = role (`tracker` or `peer`), one `O` per
/// group (the convention Kubernetes uses for client groups). Leaves are CA:FALSE with
/// digitalSignature, serverAuth + clientAuth, and key identifiers; trackers carry their DNS
/// names and IP addresses as subjectAltName. The CA is CA:TRUE (path length 0) with
/// keyCertSign + cRLSign. Keys are ECDSA P-256; signatures ECDSA with SHA-256.
public enum CertificateProfile {
    /// The algorithm of every signature our CA and our peers make.
    public static let signatureAlgorithm = Certificate.SignatureAlgorithm.ecdsaWithSHA256

    /// A new private key of the profile's type.
    public static func makePrivateKey() -> Certificate.PrivateKey {
        Certificate.PrivateKey(P256.Signing.PrivateKey())
    }

    /// A self-signed CA certificate.
    static func authorityCertificate(
        name: String, key: Certificate.PrivateKey, notBefore: Date, notAfter: Date
    ) throws -> Certificate {
        let subject = DistinguishedName([
            RelativeDistinguishedName(.init(type: .RDNAttributeType.commonName, utf8String: name))
        ])
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
            Critical(KeyUsage(keyCertSign: true, cRLSign: true))
            SubjectKeyIdentifier(hash: key.publicKey)
        }
        return try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: key.publicKey,
            notValidBefore: notBefore, notValidAfter: notAfter, issuer: subject, subject: subject,
            signatureAlgorithm: signatureAlgorithm, extensions: extensions, issuerPrivateKey: key
        )
    }

    /// The subject of a leaf: `CN` = name, `OU` = role, one `O` per group.
    static func subject(for request: IssueRequest) -> DistinguishedName {
        var names = [RelativeDistinguishedName(.init(type: .RDNAttributeType.commonName, utf8String: request.name))]
        names.append(RelativeDistinguishedName(.init(type: .RDNAttributeType.organizationalUnitName, utf8String: request.role.rawValue)))
        for group in request.groups {
            names.append(RelativeDistinguishedName(.init(type: .RDNAttributeType.organizationName, utf8String: group)))
        }
        return DistinguishedName(names)
    }

    /// The subjectAltName entries of a leaf: a tracker's DNS names and IP addresses (none for a peer).
    static func alternativeNames(for request: IssueRequest) throws -> [GeneralName] {
        var alternativeNames: [GeneralName] = request.dnsNames.map { .dnsName($0) }
        for address in request.ipAddresses {
            alternativeNames.append(.ipAddress(ASN1OctetString(contentBytes: try IPAddress.bytes(of: address)[...])))
        }
        return alternativeNames
    }

    /// A leaf certificate for a tracker or a peer, signed by the CA.
    static func leafCertificate(
        for request: IssueRequest, publicKey: Certificate.PublicKey, notBefore: Date, notAfter: Date,
        authority: Certificate, authorityKey: Certificate.PrivateKey
    ) throws -> Certificate {
        let alternativeNames = try alternativeNames(for: request)
        let authorityKeyIdentifier = try authority.extensions.subjectKeyIdentifier?.keyIdentifier
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.notCertificateAuthority)
            Critical(KeyUsage(digitalSignature: true))
            try ExtendedKeyUsage([.serverAuth, .clientAuth])
            SubjectKeyIdentifier(hash: publicKey)
            AuthorityKeyIdentifier(keyIdentifier: authorityKeyIdentifier)
            if !alternativeNames.isEmpty {
                SubjectAlternativeNames(alternativeNames)
            }
        }
        return try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: publicKey,
            notValidBefore: notBefore, notValidAfter: notAfter, issuer: authority.subject,
            subject: subject(for: request), signatureAlgorithm: signatureAlgorithm,
            extensions: extensions, issuerPrivateKey: authorityKey
        )
    }

    /// Reads name, role and groups from a leaf's subject. Throws a sentence if the subject does not
    /// follow the profile (no name, no role or two of them, a malformed group).
    static func subjectIdentity(of certificate: Certificate) throws(ValidationError) -> (name: String, role: Role, groups: [String]) {
        try subjectIdentity(of: certificate.subject)
    }

    /// Reads name, role and groups from a leaf's subject (of a certificate or of a signing request).
    static func subjectIdentity(of subject: DistinguishedName) throws(ValidationError) -> (name: String, role: Role, groups: [String]) {
        var commonNames: [String] = []
        var units: [String] = []
        var groups: [String] = []
        for relativeName in subject {
            for attribute in relativeName {
                guard let value = String(attribute.value) else {
                    throw ValidationError(.badProfile, "the subject has a value that is not text")
                }
                switch attribute.type {
                case .RDNAttributeType.commonName: commonNames.append(value)
                case .RDNAttributeType.organizationalUnitName: units.append(value)
                case .RDNAttributeType.organizationName: groups.append(value)
                default: throw ValidationError(.badProfile, "the subject has an attribute outside our profile (\(attribute.type))")
                }
            }
        }
        guard commonNames.count == 1, let name = commonNames.first else {
            throw ValidationError(.badProfile, "the subject must hold exactly one name (CN)")
        }
        if let problem = NameRules.problem(with: name, kind: "name") { throw ValidationError(.badProfile, problem) }
        guard units.count == 1, let role = Role(rawValue: units[0]) else {
            throw ValidationError(.badProfile, "the subject must hold exactly one role (OU=tracker or OU=peer)")
        }
        if let problem = groups.lazy.compactMap({ NameRules.problem(with: $0, kind: "group") }).first {
            throw ValidationError(.badProfile, problem)
        }
        return (name, role, groups)
    }

    /// The lowercase hex SHA-256 of a public key's SubjectPublicKeyInfo DER bytes: what `mtca request`
    /// prints on the machine and `mtca sign` shows on the CA, so that a person can compare the two.
    public static func fingerprint(of publicKey: Certificate.PublicKey) throws -> String {
        Hex.encode(SHA256.hash(data: try derEncoding(of: publicKey)))
    }

    /// The lowercase hex SHA-256 fingerprint of a certificate's DER bytes.
    public static func fingerprint(of certificate: Certificate) throws -> String {
        Hex.encode(SHA256.hash(data: try derEncoding(of: certificate)))
    }

    /// The DER bytes of a certificate, key or request.
    static func derEncoding(of value: some DERSerializable) throws -> [UInt8] {
        var serializer = DER.Serializer()
        try serializer.serialize(value)
        return serializer.serializedBytes
    }
}

/// Textual IP addresses (IPv4 dotted quad or IPv6) as the bytes a subjectAltName holds.
enum IPAddress {
    static func bytes(of text: String) throws -> [UInt8] {
        // inet_pton writes straight into a Swift array: copying out of a C address struct with
        // withUnsafeBytes(of:) wrote after free in the release build (docs/SECURITY-TESTING.md).
        var address = [UInt8](repeating: 0, count: 16)
        if address.withUnsafeMutableBytes({ inet_pton(AF_INET, text, $0.baseAddress) }) == 1 {
            return Array(address.prefix(4))
        }
        if address.withUnsafeMutableBytes({ inet_pton(AF_INET6, text, $0.baseAddress) }) == 1 {
            return address
        }
        throw PKIError(.invalidArgument, "'\(text)' is not an IPv4 or IPv6 address")
    }

    /// The text of the 4 or 16 bytes a subjectAltName holds; `nil` for any other length.
    static func text(of bytes: [UInt8]) -> String? {
        let family: Int32
        switch bytes.count {
        case 4: family = AF_INET
        case 16: family = AF_INET6
        default: return nil
        }
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let written = bytes.withUnsafeBytes { address in
            buffer.withUnsafeMutableBufferPointer { inet_ntop(family, address.baseAddress, $0.baseAddress, socklen_t($0.count)) }
        }
        guard written != nil else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
