import NIOCore

/// A token bucket: up to `capacity` actions at once, refilled at `perSecond` a second. A pure
/// value: the time comes in, so tests drive it without a clock.
struct TokenBucket: Sendable {
    let capacity: Double
    let perSecond: Double
    private var tokens: Double
    private var last: NIODeadline

    init(capacity: Int, perSecond: Int, now: NIODeadline) {
        self.capacity = Double(capacity)
        self.perSecond = Double(perSecond)
        tokens = Double(capacity)
        last = now
    }

    /// Takes one token if there is one at `now`.
    mutating func take(now: NIODeadline) -> Bool {
        refill(now: now)
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }

    /// Whether the bucket is full again at `now`: nothing was taken for a while.
    mutating func isFull(now: NIODeadline) -> Bool {
        refill(now: now)
        return tokens >= capacity
    }

    private mutating func refill(now: NIODeadline) {
        guard now > last else { return }
        let seconds = Double((now - last).nanoseconds) / 1e9
        tokens = min(capacity, tokens + seconds * perSecond)
        last = now
    }
}
