import FileIO
import Foundation

/// One certificate the CA issued, as the ledger records it.
public struct LedgerEntry: Codable, Sendable, Equatable {
    public var serial: String
    public var name: String
    public var role: Role
    public var groups: [String]
    public var dnsNames: [String]
    public var ipAddresses: [String]
    public var notBefore: Date
    public var notAfter: Date
    public var revokedAt: Date?
    public var revocationReason: RevocationReason?

    /// Neither revoked nor expired at `time`.
    public func isLive(at time: Date) -> Bool {
        revokedAt == nil && time <= notAfter
    }
}

/// The CA's record of every certificate it issued (several per name once renewed: each with its
/// serial, dates and revocation) and of the revocation list it last signed. It is JSON
/// (`ledger.json`), replaced atomically on every change.
struct Ledger: Codable {
    var authorityName: String
    var revocationListNumber: Int
    var revocationListDays: Int
    var certificates: [LedgerEntry]

    static let maximumSize = 32 * 1024 * 1024

    /// The certificate of `name` issued last: the one in `issued/NAME.crt`.
    func newest(named name: String) -> LedgerEntry? {
        certificates.last { $0.name == name }
    }

    static func load(from path: String) throws -> Ledger {
        let bytes = try FileIO.readFile(path, limit: maximumSize)
        do {
            return try decoder.decode(Ledger.self, from: Data(bytes))
        } catch {
            throw PKIError(.badFile, "\(path) is not a readable ledger: \(error)")
        }
    }

    func save(to path: String) throws {
        try FileIO.replaceAtomically(path, bytes: try Self.encoder.encode(self), mode: 0o644)
    }

    private static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }()

    private static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return encoder
    }()
}
