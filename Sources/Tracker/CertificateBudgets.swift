import NIOConcurrencyHelpers
import NIOCore

/// One token bucket per certificate (by fingerprint): how many requests, or how many log lines,
/// each certificate may cause a second. An insider with a valid certificate gets its share and no
/// more; the others are served as before. Buckets that are full again are dropped now and then,
/// so the table holds only certificates active in the last moments.
final class CertificateBudgets: Sendable {
    /// Most actions at once (the bucket's size).
    let burst: Int
    /// Actions a second, sustained.
    let perSecond: Int
    private let state = NIOLockedValueBox(State())

    private struct State {
        var buckets: [String: TokenBucket] = [:]
        /// Actions refused per certificate since its last allowed one.
        var refused: [String: Int] = [:]
        var nextSweep = NIODeadline.uptimeNanoseconds(0)
    }

    /// How often the table is swept of idle certificates.
    private static let sweepInterval = TimeAmount.seconds(10)

    init(burst: Int, perSecond: Int) {
        self.burst = burst
        self.perSecond = perSecond
    }

    /// Takes one action for `fingerprint` at `now`: `nil` if over budget, else how many actions of
    /// this certificate were refused since its last allowed one.
    func take(_ fingerprint: String, now: NIODeadline = .now()) -> Int? {
        state.withLockedValue { state in
            if now >= state.nextSweep {
                state.buckets = state.buckets.filter { _, bucket in
                    var bucket = bucket
                    return !bucket.isFull(now: now)
                }
                state.nextSweep = now + Self.sweepInterval
            }
            var bucket = state.buckets[fingerprint] ?? TokenBucket(capacity: burst, perSecond: perSecond, now: now)
            defer { state.buckets[fingerprint] = bucket }
            guard bucket.take(now: now) else {
                state.refused[fingerprint, default: 0] += 1
                return nil
            }
            return state.refused.removeValue(forKey: fingerprint) ?? 0
        }
    }
}
