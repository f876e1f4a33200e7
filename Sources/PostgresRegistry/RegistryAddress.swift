/// Where the shared registry lives: `postgres://USER@HOST:PORT/DB`, optionally with
/// `?sslmode=disable|require|verify-ca|verify-full`. The password is never part of it (it comes
/// from a file or `PGPASSWORD`), so the address can be logged and shown as it is.
public struct RegistryAddress: Equatable, Sendable, CustomStringConvertible {
    /// How the connection to PostgreSQL is protected.
    public enum TLSMode: String, Sendable, CaseIterable {
        /// Plain TCP: only on loopback or a network you trust.
        case disable
        /// TLS required; the server's certificate is checked against `registry-ca` when one is
        /// given, otherwise not at all (as libpq's `require`).
        case require
        /// TLS with the server's certificate chain checked (the CA file or the system's trust), not its name.
        case verifyCA = "verify-ca"
        /// TLS with the chain and the host name checked.
        case verifyFull = "verify-full"
    }

    public let user: String
    public let host: String
    public let port: Int
    public let database: String
    public let tlsMode: TLSMode

    /// Longest address accepted.
    public static let maximumLength = 512

    /// Reads an address, strictly: every part is checked and anything unknown is refused.
    public init(_ text: String) throws(RegistryAddressError) {
        guard text.utf8.count <= Self.maximumLength else { throw .tooLong }
        var rest = Substring(text)
        if rest.hasPrefix("postgres://") {
            rest = rest.dropFirst("postgres://".count)
        } else if rest.hasPrefix("postgresql://") {
            rest = rest.dropFirst("postgresql://".count)
        } else {
            throw .notPostgres
        }
        var mode = TLSMode.disable
        if let question = rest.firstIndex(of: "?") {
            let options = rest[rest.index(after: question)...]
            rest = rest[..<question]
            for option in options.split(separator: "&", omittingEmptySubsequences: false) {
                let parts = option.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                guard parts.count == 2, parts[0] == "sslmode" else { throw .unknownOption(String(option)) }
                guard let chosen = TLSMode(rawValue: String(parts[1])) else { throw .unknownTLSMode(String(parts[1])) }
                mode = chosen
            }
        }
        guard let at = rest.firstIndex(of: "@") else { throw .missingUser }
        let userPart = rest[..<at]
        if userPart.contains(":") { throw .passwordInAddress }
        guard Self.isName(userPart) else { throw .badUser(String(userPart)) }
        let afterUser = rest[rest.index(after: at)...]
        guard let slash = afterUser.firstIndex(of: "/") else { throw .missingDatabase }
        let hostPort = afterUser[..<slash]
        let databasePart = afterUser[afterUser.index(after: slash)...]
        guard Self.isName(databasePart) else { throw .badDatabase(String(databasePart)) }
        let (host, port) = try Self.hostAndPort(hostPort)
        self.user = String(userPart)
        self.host = host
        self.port = port
        self.database = String(databasePart)
        self.tlsMode = mode
    }

    /// The address as given, in its canonical form (no password is ever part of it).
    public var description: String {
        let shownHost = host.contains(":") ? "[\(host)]" : host
        let options = tlsMode == .disable ? "" : "?sslmode=\(tlsMode.rawValue)"
        return "postgres://\(user)@\(shownHost):\(port)/\(database)\(options)"
    }

    /// A PostgreSQL identifier as this address accepts it: letters, digits, `_`, `-` and `.`.
    private static func isName(_ text: Substring) -> Bool {
        !text.isEmpty && text.utf8.count <= 63
            && text.unicodeScalars.allSatisfy { $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || "_-.".unicodeScalars.contains($0)) }
    }

    private static func hostAndPort(_ text: Substring) throws(RegistryAddressError) -> (String, Int) {
        var host: Substring
        var portText: Substring?
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw .badHost(String(text)) }
            host = text[text.index(after: text.startIndex)..<close]
            let after = text[text.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw .badHost(String(text)) }
                portText = after.dropFirst()
            }
            guard !host.isEmpty, host.unicodeScalars.allSatisfy({ $0.properties.isASCIIHexDigit || $0 == ":" || $0 == "." }) else {
                throw .badHost(String(text))
            }
        } else {
            let parts = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            host = parts[0]
            portText = parts.count == 2 ? parts[1] : nil
            guard isName(host) else { throw .badHost(String(text)) }
        }
        guard let portText else { return (String(host), 5432) }
        guard portText.utf8.count <= 5, portText.allSatisfy(\.isASCII), let port = Int(portText), (1...65535).contains(port) else {
            throw .badPort(String(portText))
        }
        return (String(host), port)
    }
}

/// Why a registry address was refused.
public enum RegistryAddressError: Error, Equatable, CustomStringConvertible {
    case tooLong
    case notPostgres
    case passwordInAddress
    case missingUser
    case badUser(String)
    case badHost(String)
    case badPort(String)
    case missingDatabase
    case badDatabase(String)
    case unknownOption(String)
    case unknownTLSMode(String)

    public var description: String {
        let form = "postgres://USER@HOST:PORT/DB[?sslmode=disable|require|verify-ca|verify-full]"
        switch self {
        case .tooLong: return "the registry address is longer than \(RegistryAddress.maximumLength) characters"
        case .notPostgres: return "the registry address must start with postgres:// (\(form))"
        case .passwordInAddress:
            return "the registry address must not hold a password: put it in a file named by registry-password-file, or in PGPASSWORD"
        case .missingUser: return "the registry address names no user (\(form))"
        case .badUser(let user): return "'\(user)' is not a database user name (letters, digits, _ - .)"
        case .badHost(let host): return "'\(host)' is not a host or host:port"
        case .badPort(let port): return "'\(port)' is not a port (1-65535)"
        case .missingDatabase: return "the registry address names no database (\(form))"
        case .badDatabase(let database): return "'\(database)' is not a database name (letters, digits, _ - .)"
        case .unknownOption(let option): return "the registry address option '\(option)' is not known; only sslmode is"
        case .unknownTLSMode(let mode):
            return "sslmode '\(mode)' is not known: \(RegistryAddress.TLSMode.allCases.map(\.rawValue).joined(separator: ", "))"
        }
    }
}
