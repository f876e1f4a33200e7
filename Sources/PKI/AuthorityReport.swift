import Foundation

/// The CA's state as `mtca list` shows it: every certificate with its status, and the CRL's window.
public struct AuthorityReport: Sendable {
    public let authorityName: String
    public let authorityNotAfter: Date
    public let certificates: [LedgerEntry]
    public let revocationListNumber: Int
    public let revocationListNextUpdate: Date

    /// The status word of one certificate at `time`.
    public static func status(of entry: LedgerEntry, at time: Date) -> String {
        if let revokedAt = entry.revokedAt {
            return "revoked \(CertificateAuthority.day(revokedAt)) (\(entry.revocationReason?.rawValue ?? "unspecified"))"
        }
        if time > entry.notAfter { return "expired" }
        let daysLeft = Int(entry.notAfter.timeIntervalSince(time) / 86400)
        if daysLeft < ExpiryNotice.certificateDays { return "expiring in \(daysLeft) days" }
        return "valid"
    }

    /// A table for people, followed by a warning for every name whose newest certificate ends within
    /// ``ExpiryNotice/certificateDays`` (when trackers and peers start warning too), and the CRL's validity, with a warning when it ends soon.
    public func rendered(at time: Date = Date()) -> String {
        let header = ["NAME", "ROLE", "GROUPS", "SERIAL", "NOT AFTER", "STATUS"]
        let rows = certificates.map { entry in
            [
                entry.name, entry.role.rawValue, entry.groups.isEmpty ? "-" : entry.groups.joined(separator: ","),
                String(entry.serial.prefix(16)), CertificateAuthority.day(entry.notAfter), Self.status(of: entry, at: time),
            ]
        }
        let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max()! }
        func line(_ cells: [String]) -> String {
            zip(cells, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ")
                .trimmingCharacters(in: .whitespaces)
        }
        var lines = ["CA: \(authorityName), valid until \(CertificateAuthority.day(authorityNotAfter))"]
        if rows.isEmpty {
            lines.append("No certificates issued yet: sign a machine's request with 'mtca sign NAME.csr', or 'mtca issue peer NAME' for a demo.")
        } else {
            lines += [line(header)] + rows.map(line)
        }
        let newest = Dictionary(certificates.map { ($0.name, $0) }, uniquingKeysWith: { _, later in later })
        let ending = newest.values.filter { entry in
            entry.isLive(at: time) && entry.notAfter.timeIntervalSince(time) < Double(ExpiryNotice.certificateDays) * 86400
        }.sorted { $0.notAfter < $1.notAfter }
        if !ending.isEmpty {
            let names = ending.map { "\($0.name) (\(CertificateAuthority.day($0.notAfter)))" }.joined(separator: ", ")
            lines.append(
                "WARNING, expiring within \(ExpiryNotice.certificateDays) days: \(names). Renew with 'mtca renew NAME', or sign a new request from that machine."
            )
        }
        let crlDaysLeft = revocationListNextUpdate.timeIntervalSince(time) / 86400
        let crlLine = "CRL #\(revocationListNumber) valid until \(CertificateAuthority.day(revocationListNextUpdate))"
        if crlDaysLeft < 0 {
            lines.append("\(crlLine): EXPIRED. Every certificate is refused until you run 'mtca crl' and copy crl.pem to every machine.")
        } else if crlDaysLeft < Double(ExpiryNotice.revocationListDays) {
            lines.append("\(crlLine): WARNING, expires in \(Int(crlDaysLeft)) days. Run 'mtca crl' and copy crl.pem to the trackers.")
        } else {
            lines.append("\(crlLine) (in \(Int(crlDaysLeft)) days)")
        }
        return lines.joined(separator: "\n")
    }
}
