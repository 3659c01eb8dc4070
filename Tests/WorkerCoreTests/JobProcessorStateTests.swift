import Testing
@testable import WorkerCore

/// The processor's bookkeeping, without a store.
@Suite("JobProcessor state")
struct JobProcessorStateTests {
    @Test("under a backlog (the claim loop never drained), retries' due times that passed do not pile up; those still to come are kept")
    func retryDuesStayBounded() {
        var state = JobProcessor.State()
        let now = ContinuousClock.now
        for index in 0..<50_000 { state.noteRetryDue(at: now - .milliseconds(index + 1), now: now) }
        // Before, one entry a retry: 50,000.
        #expect(state.retryDues.count <= JobProcessor.State.retryDuesKept + 1)
        let later = now + .seconds(60)
        state.noteRetryDue(at: later, now: now)
        for index in 0..<5_000 { state.noteRetryDue(at: now - .milliseconds(index + 1), now: now) }
        #expect(state.retryDues.contains(later), "a retry still to come is kept")
        #expect(state.retryDues.count <= JobProcessor.State.retryDuesKept + 1)
    }
}
