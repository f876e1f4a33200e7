import NIOCore
import Testing

@testable import Tracker

/// Per-certificate budgets, driven with made-up time.
@Suite struct CertificateBudgetTests {
    private let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

    @Test func aBucketAllowsItsBurstThenItsRate() {
        var bucket = TokenBucket(capacity: 3, perSecond: 2, now: start)
        var taken: [Bool] = []
        for _ in 0..<5 { taken.append(bucket.take(now: start)) }
        #expect(taken == [true, true, true, false, false])
        let halfASecondLater = [bucket.take(now: start + .milliseconds(500)), bucket.take(now: start + .milliseconds(500))]
        #expect(halfASecondLater == [true, false])
        let fullAfterOneSecond = bucket.isFull(now: start + .seconds(1))
        let fullAfterTen = bucket.isFull(now: start + .seconds(10))
        #expect(!fullAfterOneSecond && fullAfterTen)
    }

    @Test func oneCertificateOverItsBudgetLeavesOthersAlone() {
        let budgets = CertificateBudgets(burst: 2, perSecond: 1)
        #expect(budgets.take("mallory", now: start) == 0)
        #expect(budgets.take("mallory", now: start) == 0)
        #expect(budgets.take("mallory", now: start) == nil)
        #expect(budgets.take("mallory", now: start) == nil)
        #expect(budgets.take("alice", now: start) == 0)
        // The next allowed action says how many were held back since the last one.
        #expect(budgets.take("mallory", now: start + .seconds(1)) == 2)
        #expect(budgets.take("mallory", now: start + .seconds(1)) == nil)
    }
}
