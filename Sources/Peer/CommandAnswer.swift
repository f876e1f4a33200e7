import Foundation

/// A command's successful answer: the sentence people read, and the same facts as fields for
/// scripts (`peer --json` prints both as one JSON object).
public struct CommandAnswer: Sendable, Equatable {
    public let message: String
    public let fields: [String: AnswerValue]

    public init(_ message: String, fields: [String: AnswerValue] = [:]) {
        self.message = message
        self.fields = fields
    }
}

/// One field of a ``CommandAnswer``: the JSON values a script can read.
public enum AnswerValue: Sendable, Equatable, Encodable {
    case bool(Bool)
    case int(Int64)
    case number(Double)
    case text(String)
    case list([AnswerValue])
    case object([String: AnswerValue])

    public static func count(_ value: some BinaryInteger) -> AnswerValue { .int(Int64(value)) }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .bool(let value): try container.encode(value)
        case .int(let value): try container.encode(value)
        case .number(let value): try container.encode(value.isFinite ? value : 0)
        case .text(let value): try container.encode(value)
        case .list(let values): try container.encode(values)
        case .object(let fields): try container.encode(fields)
        }
    }
}

extension CommandAnswer {
    /// The answer as one line of JSON: `ok`, `code` and `message`, then the fields.
    public var jsonLine: String {
        Self.json(["ok": .bool(true), "code": .text("OK"), "message": .text(message)].merging(fields) { first, _ in first })
    }

    /// A failure as one line of JSON: `ok` false, its code and message.
    public static func jsonLine(of failure: CommandFailure) -> String {
        json(["ok": .bool(false), "code": .text("\(failure.code)"), "message": .text(failure.message)])
    }

    /// Encodes text, whole numbers, finite numbers (others are written as 0), lists and objects,
    /// which JSON holds without fail.
    private static func json(_ fields: [String: AnswerValue]) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? encoder.encode(fields)) ?? Data(), as: UTF8.self)
    }
}
