import Foundation
import SwiftASN1
import X509

/// Why a certificate was revoked: the RFC 5280 reason codes that make sense for our identities.
public enum RevocationReason: String, Sendable, Codable, CaseIterable {
    case unspecified
    case keyCompromise
    case affiliationChanged
    case superseded
    case cessationOfOperation
    case privilegeWithdrawn

    /// The CRLReason value of RFC 5280 §5.3.1.
    var code: Int {
        switch self {
        case .unspecified: return 0
        case .keyCompromise: return 1
        case .affiliationChanged: return 3
        case .superseded: return 4
        case .cessationOfOperation: return 5
        case .privilegeWithdrawn: return 9
        }
    }

    init?(code: Int) {
        guard let reason = Self.allCases.first(where: { $0.code == code }) else { return nil }
        self = reason
    }
}

/// A certificate revocation list (RFC 5280 §5, version 2) signed by our CA: the revoked serial
/// numbers and the window in which the list is current. Built and read with swift-asn1; signed
/// and checked with swift-certificates' keys. OpenSSL reads it as `-----BEGIN X509 CRL-----`.
public struct RevocationList: Sendable {
    /// One revoked certificate.
    public struct Entry: Sendable, Equatable {
        public var serial: Certificate.SerialNumber
        public var revokedAt: Date
        public var reason: RevocationReason

        public init(serial: Certificate.SerialNumber, revokedAt: Date, reason: RevocationReason) {
            self.serial = serial
            self.revokedAt = revokedAt
            self.reason = reason
        }
    }

    public let issuer: DistinguishedName
    public let thisUpdate: Date
    public let nextUpdate: Date
    /// The CRL number extension: grows by one with every list the CA signs.
    public let number: Int
    public let entries: [Entry]
    /// The whole signed list in DER.
    public let derEncoded: [UInt8]
    private let signedPart: ArraySlice<UInt8>
    private let signature: [UInt8]
    private let signatureAlgorithm: ASN1ObjectIdentifier

    private static let crlNumberOID: ASN1ObjectIdentifier = [2, 5, 29, 20]
    private static let reasonCodeOID: ASN1ObjectIdentifier = [2, 5, 29, 21]
    private static let authorityKeyIdentifierOID: ASN1ObjectIdentifier = [2, 5, 29, 35]
    private static let ecdsaWithSHA256OID: ASN1ObjectIdentifier = [1, 2, 840, 10045, 4, 3, 2]
    /// Largest CRL accepted when reading one.
    public static let maximumSize = 8 * 1024 * 1024

    /// Signs a new list with the CA's key.
    public static func sign(
        entries: [Entry], number: Int, thisUpdate: Date, nextUpdate: Date,
        authority: Certificate, authorityKey: Certificate.PrivateKey
    ) throws -> RevocationList {
        var tbs = DER.Serializer()
        try tbs.appendConstructedNode(identifier: .sequence) { coder in
            try coder.serialize(1)  // v2
            try coder.appendConstructedNode(identifier: .sequence) { try $0.serialize(ecdsaWithSHA256OID) }
            try coder.serialize(authority.subject)
            try ASN1Time.serialize(thisUpdate, into: &coder)
            try ASN1Time.serialize(nextUpdate, into: &coder)
            if !entries.isEmpty {
                try coder.appendConstructedNode(identifier: .sequence) { coder in
                    for entry in entries {
                        try coder.appendConstructedNode(identifier: .sequence) { coder in
                            try coder.serialize(entry.serial.bytes)
                            try ASN1Time.serialize(entry.revokedAt, into: &coder)
                            try coder.appendConstructedNode(identifier: .sequence) { coder in
                                try serializeExtension(reasonCodeOID, into: &coder) {
                                    try $0.serialize(ASN1Enumerated(entry.reason.code))
                                }
                            }
                        }
                    }
                }
            }
            try coder.serialize(explicitlyTaggedWithTagNumber: 0, tagClass: .contextSpecific) { coder in
                try coder.appendConstructedNode(identifier: .sequence) { coder in
                    try serializeExtension(crlNumberOID, into: &coder) { try $0.serialize(number) }
                    if let keyIdentifier = try authority.extensions.subjectKeyIdentifier?.keyIdentifier {
                        try serializeExtension(authorityKeyIdentifierOID, into: &coder) { coder in
                            coder.appendConstructedNode(identifier: .sequence) { coder in
                                coder.appendPrimitiveNode(identifier: ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific)) {
                                    $0.append(contentsOf: keyIdentifier)
                                }
                            }
                        }
                    }
                }
            }
        }
        let signature = try authorityKey.sign(bytes: tbs.serializedBytes, signatureAlgorithm: CertificateProfile.signatureAlgorithm)
        var whole = DER.Serializer()
        try whole.appendConstructedNode(identifier: .sequence) { coder in
            coder.serializeRawBytes(tbs.serializedBytes)
            try coder.appendConstructedNode(identifier: .sequence) { try $0.serialize(ecdsaWithSHA256OID) }
            try coder.serialize(ASN1BitString(bytes: signature.rawRepresentation[...]))
        }
        return try RevocationList(derEncoded: whole.serializedBytes)
    }

    /// Reads a DER-encoded list. The signature is not checked here: see ``isSigned(by:)``.
    public init(derEncoded bytes: [UInt8]) throws {
        let (tbsNode, algorithm, signatureBits) = try DER.sequence(try DER.parse(bytes), identifier: .sequence) { nodes in
            let tbsNode = try required(nodes.next())
            let algorithm = try DER.sequence(of: ASN1ObjectIdentifier.self, identifier: .sequence, rootNode: try required(nodes.next()))
            let signature = try ASN1BitString(derEncoded: &nodes)
            guard nodes.next() == nil else { throw ASN1Error.invalidASN1Object(reason: "unexpected field after the CRL signature") }
            return (tbsNode, algorithm, signature)
        }
        guard algorithm.count == 1 else { throw ASN1Error.invalidASN1Object(reason: "unexpected signature algorithm parameters") }
        guard signatureBits.paddingBits == 0 else { throw ASN1Error.invalidASN1Object(reason: "the CRL signature is not whole bytes") }
        var number = -1
        var entries: [Entry] = []
        (issuer, thisUpdate, nextUpdate) = try DER.sequence(tbsNode, identifier: .sequence) { fields in
            guard try Int(derEncoded: &fields) == 1 else { throw ASN1Error.invalidASN1Object(reason: "CRL is not version 2") }
            _ = try DER.sequence(of: ASN1ObjectIdentifier.self, identifier: .sequence, rootNode: try required(fields.next()))
            let issuer = try DistinguishedName(derEncoded: required(fields.next()))
            let thisUpdate = try ASN1Time.parse(&fields)
            let nextUpdate = try ASN1Time.parse(&fields)
            var node = fields.next()
            if let list = node, list.identifier == .sequence {
                entries = try children(of: list).map(Self.parseEntry)
                node = fields.next()
            }
            try DER.explicitlyTagged(try required(node), tagNumber: 0, tagClass: .contextSpecific) { wrapped in
                for extensionNode in try children(of: wrapped) {
                    let (oid, value) = try Self.parseExtension(extensionNode)
                    if oid == Self.crlNumberOID { number = try Int(derEncoded: value) }
                }
            }
            guard fields.next() == nil else { throw ASN1Error.invalidASN1Object(reason: "unexpected field in the CRL") }
            return (issuer, thisUpdate, nextUpdate)
        }
        guard number >= 0 else { throw ASN1Error.invalidASN1Object(reason: "the CRL has no CRL number") }
        self.number = number
        self.entries = entries
        self.signedPart = tbsNode.encodedBytes
        self.signatureAlgorithm = algorithm[0]
        self.signature = Array(signatureBits.bytes)
        self.derEncoded = bytes
    }

    /// Reads a PEM `X509 CRL` block.
    public init(pemEncoded text: String) throws {
        let document = try PEMDocument(pemString: text)
        guard document.discriminator == "X509 CRL" else {
            throw ASN1Error.invalidPEMDocument(reason: "expected an X509 CRL, found \(document.discriminator)")
        }
        try self.init(derEncoded: document.derBytes)
    }

    /// The list as PEM text, the form `openssl crl` reads.
    public var pemEncoded: String {
        PEMDocument(type: "X509 CRL", derBytes: derEncoded).pemString + "\n"
    }

    /// Whether `authority` issued this list: same name, and its key made the signature.
    public func isSigned(by authority: Certificate) -> Bool {
        guard issuer == authority.subject, signatureAlgorithm == Self.ecdsaWithSHA256OID else { return false }
        return authority.publicKey.isValidSignature(signature, for: signedPart, signatureAlgorithm: CertificateProfile.signatureAlgorithm)
    }

    /// The entry for `serial`, if that certificate is revoked.
    public func entry(for serial: Certificate.SerialNumber) -> Entry? {
        entries.first { $0.serial == serial }
    }

    private static func serializeExtension(
        _ oid: ASN1ObjectIdentifier, into coder: inout DER.Serializer, value: (inout DER.Serializer) throws -> Void
    ) throws {
        var inner = DER.Serializer()
        try value(&inner)
        try coder.appendConstructedNode(identifier: .sequence) { coder in
            try coder.serialize(oid)
            try coder.serialize(ASN1OctetString(contentBytes: inner.serializedBytes[...]))
        }
    }

    private static func parseExtension(_ node: ASN1Node) throws -> (ASN1ObjectIdentifier, [UInt8]) {
        try DER.sequence(node, identifier: .sequence) { nodes in
            let oid = try ASN1ObjectIdentifier(derEncoded: &nodes)
            var next = nodes.next()
            if let critical = next, critical.identifier == .boolean {
                guard try !Bool(derEncoded: critical) else {
                    throw ASN1Error.invalidASN1Object(reason: "CRL has a critical extension we do not understand")
                }
                next = nodes.next()
            }
            guard let valueNode = next else { throw ASN1Error.invalidASN1Object(reason: "CRL extension without value") }
            return (oid, Array(try ASN1OctetString(derEncoded: valueNode).bytes))
        }
    }

    private static func parseEntry(_ node: ASN1Node) throws -> Entry {
        try DER.sequence(node, identifier: .sequence) { nodes in
            let serial = try ArraySlice<UInt8>(derEncoded: &nodes)
            let revokedAt = try ASN1Time.parse(&nodes)
            var reason = RevocationReason.unspecified
            if let extensionsNode = nodes.next() {
                for extensionNode in try children(of: extensionsNode) {
                    let (oid, value) = try parseExtension(extensionNode)
                    if oid == reasonCodeOID {
                        let code = try ASN1Enumerated(derEncoded: value)
                        reason = RevocationReason(code: code.value) ?? .unspecified
                    }
                }
            }
            return Entry(serial: Certificate.SerialNumber(bytes: serial), revokedAt: revokedAt, reason: reason)
        }
    }
}

/// ASN.1 ENUMERATED holding a small integer (the CRL reason code).
private struct ASN1Enumerated: DERImplicitlyTaggable {
    static var defaultIdentifier: ASN1Identifier { .enumerated }
    let value: Int

    init(_ value: Int) { self.value = value }

    init(derEncoded node: ASN1Node, withIdentifier identifier: ASN1Identifier) throws {
        value = try Int(derEncoded: node, withIdentifier: identifier)
    }

    func serialize(into coder: inout DER.Serializer, withIdentifier identifier: ASN1Identifier) throws {
        try value.serialize(into: &coder, withIdentifier: identifier)
    }
}

/// The elements of a SEQUENCE node.
private func children(of node: ASN1Node) throws -> [ASN1Node] {
    try DER.sequence(node, identifier: .sequence) { nodes in
        var elements: [ASN1Node] = []
        while let element = nodes.next() { elements.append(element) }
        return elements
    }
}

private func required(_ node: ASN1Node?) throws -> ASN1Node {
    guard let node else { throw ASN1Error.invalidASN1Object(reason: "the CRL ends early") }
    return node
}
