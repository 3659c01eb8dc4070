import Testing
@testable import WorkerCore

@Suite("RetryPolicy")
struct RetryPolicyTests {
    @Test("delays double per attempt and stop at the maximum")
    func exponentialAndCapped() {
        let policy = RetryPolicy(base: .seconds(1), maximum: .seconds(10), jitter: 0)
        #expect(policy.delay(afterAttempt: 1) == .seconds(1))
        #expect(policy.delay(afterAttempt: 2) == .seconds(2))
        #expect(policy.delay(afterAttempt: 4) == .seconds(8))
        #expect(policy.delay(afterAttempt: 5) == .seconds(10))
        #expect(policy.delay(afterAttempt: 500) == .seconds(10))
    }

    @Test("jitter stays within its fraction of the delay and varies")
    func jitterBounds() {
        let policy = RetryPolicy(base: .seconds(4), maximum: .seconds(100), jitter: 0.5)
        let delays = (0..<200).map { _ in policy.delay(afterAttempt: 1) }
        #expect(delays.allSatisfy { $0 >= .seconds(2) && $0 <= .seconds(4) })
        #expect(Set(delays).count > 10)
    }

    @Test("a failed attempt retries while attempts remain, then fails")
    func outcomes() {
        let policy = RetryPolicy(base: .milliseconds(100), jitter: 0)
        #expect(policy.outcome(forFailedAttempt: 1, maxAttempts: 3, error: "e") == .retry(error: "e", delay: .milliseconds(100)))
        #expect(policy.outcome(forFailedAttempt: 2, maxAttempts: 3, error: "e") == .retry(error: "e", delay: .milliseconds(200)))
        #expect(policy.outcome(forFailedAttempt: 3, maxAttempts: 3, error: "e") == .failed(error: "e"))
    }
}
