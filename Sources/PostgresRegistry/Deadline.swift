import NIOConcurrencyHelpers
import NIOCore

/// Runs an operation but answers within a time limit: past it the caller gets ``Passed`` at once
/// and the operation is cancelled, without waiting for it to notice (a query to a database that
/// went silent may never return).
enum Deadline {
    /// The time limit passed before the operation finished.
    struct Passed: Error {}

    static func run<Value: Sendable>(
        within limit: TimeAmount, on eventLoop: any EventLoop, _ operation: @escaping @Sendable () async throws -> Value
    ) async throws -> Value {
        let waiting = NIOLockedValueBox<CheckedContinuation<Value, any Error>?>(nil)
        return try await withCheckedThrowingContinuation { continuation in
            waiting.withLockedValue { $0 = continuation }
            let work = Task {
                let result: Result<Value, any Error>
                do {
                    result = .success(try await operation())
                } catch {
                    result = .failure(error)
                }
                waiting.withLockedValue { $0.take() }?.resume(with: result)
            }
            eventLoop.scheduleTask(in: limit) {
                guard let continuation = waiting.withLockedValue({ $0.take() }) else { return }
                work.cancel()
                continuation.resume(throwing: Passed())
            }
        }
    }
}
