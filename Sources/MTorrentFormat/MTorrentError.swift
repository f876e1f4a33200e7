import PKI

/// Why a `.mtorrent` file was refused or could not be made. Equality compares only the code, so
/// tests match on codes while messages stay free to improve.
public struct MTorrentError: Error, Equatable, CustomStringConvertible, Sendable {
    /// A stable name for one kind of refusal.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let description: String

        public static let unreadable = Code(description: "unreadable")
        public static let tooLarge = Code(description: "too-large")
        public static let notText = Code(description: "not-text")
        public static let unknownVersion = Code(description: "unknown-version")
        public static let missingField = Code(description: "missing-field")
        public static let duplicateField = Code(description: "duplicate-field")
        public static let misplacedField = Code(description: "misplaced-field")
        public static let unknownField = Code(description: "unknown-field")
        public static let badValue = Code(description: "bad-value")
        public static let badName = Code(description: "bad-name")
        public static let pieceCountMismatch = Code(description: "piece-count-mismatch")
        public static let rootMismatch = Code(description: "root-mismatch")
        public static let badCertificate = Code(description: "bad-certificate")
        public static let nonCanonical = Code(description: "non-canonical")
        public static let trailingData = Code(description: "trailing-data")
        /// The signature does not match the content under the signer's key.
        public static let signatureInvalid = Code(description: "signature-invalid")
        /// The signer's certificate failed our validation policy; ``validation`` says how.
        public static let signerRefused = Code(description: "signer-refused")
    }

    public let code: Code
    public let reason: String
    /// The 1-based line of the file the error is about, when there is one.
    public let line: Int?
    /// The validation failure behind ``Code/signerRefused``.
    public let validation: ValidationError?

    public init(_ code: Code, _ reason: String, line: Int? = nil, validation: ValidationError? = nil) {
        self.code = code
        self.reason = reason
        self.line = line
        self.validation = validation
    }

    public var description: String {
        line.map { "line \($0): \(reason)" } ?? reason
    }

    public static func == (lhs: MTorrentError, rhs: MTorrentError) -> Bool { lhs.code == rhs.code }
}
