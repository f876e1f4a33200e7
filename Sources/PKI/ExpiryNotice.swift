import Foundation
import X509

/// The warnings a server logs before something it needs runs out: its own certificate (within
/// ``certificateDays``) and the CA's revocation list (within ``revocationListDays``). Past either
/// date every handshake fails, so operators hear of it while there is still time to renew.
public enum ExpiryNotice {
    /// Days before its own certificate expires that a tracker or peer starts warning.
    public static let certificateDays = 14
    /// Days before the revocation list it holds expires that a tracker or peer starts warning.
    public static let revocationListDays = 7

    /// One warning per thing that expires soon (or already did) at `now`; empty when all is well.
    public static func warnings(certificate: Certificate, name: String, revocationList: RevocationList, now: Date) -> [String] {
        var warnings: [String] = []
        if let days = daysLeft(until: certificate.notValidAfter, now: now, within: certificateDays) {
            warnings.append(
                days < 0
                    ? "the certificate of '\(name)' expired on \(day(certificate.notValidAfter)); renew it with 'mtca renew \(name)' and reload (SIGHUP)"
                    : "the certificate of '\(name)' expires on \(day(certificate.notValidAfter)) (\(days) days left); renew it with 'mtca renew \(name)'; it is picked up without a restart"
            )
        }
        if let days = daysLeft(until: revocationList.nextUpdate, now: now, within: revocationListDays) {
            warnings.append(
                days < 0
                    ? "the revocation list (number \(revocationList.number)) expired on \(day(revocationList.nextUpdate)); every handshake fails until 'mtca crl' signs a new one"
                    : "the revocation list (number \(revocationList.number)) expires on \(day(revocationList.nextUpdate)) (\(days) days left); run 'mtca crl' on the CA and copy crl.pem to the trackers"
            )
        }
        return warnings
    }

    /// Whole days from `now` to `date` (negative once past), if that is at most `within` days.
    private static func daysLeft(until date: Date, now: Date, within: Int) -> Int? {
        let seconds = date.timeIntervalSince(now)
        guard seconds <= TimeInterval(within) * 86_400 else { return nil }
        return seconds < 0 ? -1 : Int(seconds / 86_400)
    }

    private static func day(_ date: Date) -> String {
        ISO8601DateFormatter.string(from: date, timeZone: TimeZone(identifier: "UTC")!, formatOptions: [.withFullDate])
    }
}
