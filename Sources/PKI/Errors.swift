/// Why a certificate was refused by ``TrustStore/validate(_:as:at:)``. Equality compares only
/// the code, so callers and tests match on codes while the reasons stay free to improve.
public struct ValidationError: Error, Equatable, CustomStringConvertible, Sendable {
    /// A stable name for one kind of refusal.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let description: String

        /// Not signed by our CA (another CA, self-signed, or tampered with).
        public static let unknownAuthority = Code(description: "unknown-authority")
        /// Past its notAfter date.
        public static let expired = Code(description: "expired")
        /// Before its notBefore date.
        public static let notYetValid = Code(description: "not-yet-valid")
        /// Listed in the CA's revocation list.
        public static let revoked = Code(description: "revoked")
        /// A valid certificate of the other role (a peer acting as a tracker, or the reverse).
        public static let wrongRole = Code(description: "wrong-role")
        /// Does not follow our certificate profile (a CA certificate, missing usages, a malformed subject).
        public static let badProfile = Code(description: "bad-profile")
        /// Our CA certificate itself is outside its validity period.
        public static let authorityExpired = Code(description: "authority-expired")
        /// The revocation list is not signed by our CA or cannot be read.
        public static let revocationListInvalid = Code(description: "revocation-list-invalid")
        /// The revocation list is past its nextUpdate: renew it with `mtca crl`.
        public static let revocationListExpired = Code(description: "revocation-list-expired")
        /// An offered revocation list is not newer (by CRL number) than the one in force.
        public static let revocationListNotNewer = Code(description: "revocation-list-not-newer")
    }

    public let code: Code
    public let reason: String

    public init(_ code: Code, _ reason: String) {
        self.code = code
        self.reason = reason
    }

    public var description: String { reason }

    public static func == (lhs: ValidationError, rhs: ValidationError) -> Bool { lhs.code == rhs.code }
}

/// A failure of a CA operation (`mtca init`, `issue`, `request`, `sign`, `bundle`, `renew`, `revoke`,
/// `crl`) or of loading PKI files.
/// Equality compares only the code.
public struct PKIError: Error, Equatable, CustomStringConvertible, Sendable {
    /// A stable name for one kind of failure.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let description: String

        /// A CA already exists where `init` was asked to create one.
        public static let alreadyInitialized = Code(description: "already-initialized")
        /// No CA at the given folder.
        public static let notInitialized = Code(description: "not-initialized")
        /// The name already has a live certificate.
        public static let nameInUse = Code(description: "name-in-use")
        /// No certificate (or none that can be revoked) for the name.
        public static let unknownName = Code(description: "unknown-name")
        /// A bad name, group, address, lifetime or similar.
        public static let invalidArgument = Code(description: "invalid-argument")
        /// A PKI file is missing, unreadable, or not what it should be.
        public static let badFile = Code(description: "bad-file")
        /// A certificate signing request that is malformed, badly signed, or asks for more than our profile allows.
        public static let invalidRequest = Code(description: "invalid-request")
        /// The CA folder does not hold the private key an operation needs (the machine made it).
        public static let keyNotHeld = Code(description: "key-not-held")
        /// A file the operation would write exists already; nothing was overwritten.
        public static let fileExists = Code(description: "file-exists")
    }

    public let code: Code
    public let reason: String

    public init(_ code: Code, _ reason: String) {
        self.code = code
        self.reason = reason
    }

    public var description: String { reason }

    public static func == (lhs: PKIError, rhs: PKIError) -> Bool { lhs.code == rhs.code }
}
