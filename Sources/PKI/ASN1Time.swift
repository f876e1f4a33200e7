import Foundation
import SwiftASN1

/// RFC 5280 Time: UTCTime for the years 1950–2049, GeneralizedTime otherwise, whole seconds in UTC.
enum ASN1Time {
    private static let utc: Calendar = {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar
    }()

    static func serialize(_ date: Date, into coder: inout DER.Serializer) throws {
        let c = utc.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        let (year, month, day, hour, minute, second) = (c.year!, c.month!, c.day!, c.hour!, c.minute!, c.second!)
        if (1950..<2050).contains(year) {
            try coder.serialize(UTCTime(year: year, month: month, day: day, hours: hour, minutes: minute, seconds: second))
        } else {
            try coder.serialize(
                GeneralizedTime(year: year, month: month, day: day, hours: hour, minutes: minute, seconds: second, fractionalSeconds: 0)
            )
        }
    }

    static func parse(_ nodes: inout ASN1NodeCollection.Iterator) throws -> Date {
        guard let node = nodes.next() else { throw ASN1Error.invalidASN1Object(reason: "a time is missing") }
        let parts: (Int, Int, Int, Int, Int, Int)
        switch node.identifier {
        case UTCTime.defaultIdentifier:
            let t = try UTCTime(derEncoded: node)
            parts = (t.year, t.month, t.day, t.hours, t.minutes, t.seconds)
        case GeneralizedTime.defaultIdentifier:
            let t = try GeneralizedTime(derEncoded: node)
            parts = (t.year, t.month, t.day, t.hours, t.minutes, t.seconds)
        default:
            throw ASN1Error.unexpectedFieldType(node.identifier)
        }
        let components = DateComponents(year: parts.0, month: parts.1, day: parts.2, hour: parts.3, minute: parts.4, second: parts.5)
        guard let date = utc.date(from: components) else { throw ASN1Error.invalidASN1Object(reason: "a time is out of range") }
        return date
    }
}
