import Wire

/// A command that failed: its ``FailureCode`` and one sentence a person can act on. The shell
/// prints it as `FAILURE: CODE message`.
public struct CommandFailure: Error, CustomStringConvertible, Equatable {
    public let code: FailureCode
    public let message: String

    public init(_ code: FailureCode, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue) \(message)" }
}
