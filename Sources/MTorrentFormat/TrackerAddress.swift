#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A tracker's `host:port`: an IPv4 address, a bracketed IPv6 address or a DNS name, and a port
/// from 1 to 65535, written canonically (no leading zeros, no spaces).
public struct TrackerAddress: Sendable, Hashable, CustomStringConvertible {
    public let host: String
    public let port: UInt16

    /// Parses `host:port`; `nil` if it is not exactly that. A listening address may ask for port 0
    /// (any free port) with `allowingPortZero`.
    public init?(_ text: some StringProtocol, allowingPortZero: Bool = false) {
        let text = String(text)
        guard let colon = text.lastIndex(of: ":") else { return nil }
        let host = String(text[..<colon])
        let portText = text[text.index(after: colon)...]
        guard !portText.isEmpty, portText.count <= 5, portText.utf8.allSatisfy({ (0x30...0x39).contains($0) }),
              portText == "0" || portText.first != "0", let port = UInt16(portText), port > 0 || allowingPortZero
        else { return nil }
        guard Self.isIPv4(host) || Self.isBracketedIPv6(host) || Self.isDNSName(host) else { return nil }
        self.host = host
        self.port = port
    }

    public var description: String { "\(host):\(port)" }

    private static func isIPv4(_ host: String) -> Bool {
        var address = in_addr()
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        // inet_pton accepts only dotted quads; refuse leading zeros so the text is canonical.
        return inet_pton(AF_INET, host, &address) == 1 && parts.allSatisfy { $0 == "0" || $0.first != "0" }
    }

    private static func isBracketedIPv6(_ host: String) -> Bool {
        guard host.hasPrefix("["), host.hasSuffix("]"), host.count > 2 else { return false }
        var address = in6_addr()
        return inet_pton(AF_INET6, String(host.dropFirst().dropLast()), &address) == 1
    }

    private static func isDNSName(_ host: String) -> Bool {
        guard !host.isEmpty, host.utf8.count <= 253 else { return false }
        let labels = host.split(separator: ".", omittingEmptySubsequences: false)
        // An all-numeric name would read as a (malformed) IPv4 address: refuse it.
        guard labels.last.map({ !$0.allSatisfy(\.isNumber) }) ?? false else { return false }
        return labels.allSatisfy { label in
            !label.isEmpty && label.count <= 63 && !label.hasPrefix("-") && !label.hasSuffix("-")
                && label.utf8.allSatisfy { byte in
                    (0x61...0x7a).contains(byte) || (0x30...0x39).contains(byte) || byte == 0x2d
                }
        }
    }
}
