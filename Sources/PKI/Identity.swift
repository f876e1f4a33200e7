import X509

/// What a certificate allows its holder to be on the network: a tracker serves the registry,
/// a peer shares, downloads and signs `.mtorrent` files. A certificate carries exactly one role.
public enum Role: String, Sendable, Codable, CaseIterable, CustomStringConvertible {
    case tracker
    case peer

    public var description: String { rawValue }
}

/// The identity read from a certificate that passed validation against our CA: who the other
/// side is, in what role, in which groups, and the SHA-256 fingerprint of its certificate.
public struct VerifiedIdentity: Sendable, Hashable, CustomStringConvertible {
    public let name: String
    public let role: Role
    public let groups: [String]
    /// Lowercase hex SHA-256 of the certificate's DER bytes, as `openssl x509 -fingerprint -sha256` shows it (without colons).
    public let fingerprint: String
    /// Lowercase hex of the certificate's serial number, as the ledger and `mtca list` show it.
    public let serial: String

    public var description: String {
        let groupList = groups.isEmpty ? "" : " groups=\(groups.joined(separator: ","))"
        return "\(role) \(name)\(groupList) sha256=\(fingerprint.prefix(16))…"
    }
}

/// The rules for names of certificates and groups. A name is also a file name under `issued/`,
/// so it is kept to a safe, portable alphabet.
public enum NameRules {
    /// Longest accepted name or group, in characters.
    public static let maximumLength = 64

    /// Returns `nil` if `name` is acceptable, otherwise a sentence saying why not.
    public static func problem(with name: String, kind: String) -> String? {
        if name.isEmpty { return "the \(kind) is empty" }
        if name.count > maximumLength { return "the \(kind) '\(name)' is longer than \(maximumLength) characters" }
        let allowed = name.unicodeScalars.allSatisfy { scalar in
            switch scalar {
            case "a"..."z", "A"..."Z", "0"..."9", "-", "_", ".": return true
            default: return false
            }
        }
        if !allowed { return "the \(kind) '\(name)' may contain only letters, digits, '-', '_' and '.'" }
        if name.hasPrefix(".") || name.hasPrefix("-") { return "the \(kind) '\(name)' may not start with '.' or '-'" }
        return nil
    }
}
