import Foundation
import Testing
import WorkerCore

/// What the worker says when an outcome write was not applied: it looks at the job as it is now.
@Suite("OutcomeWrite")
struct OutcomeWriteTests {
    static let lease = Lease(jobID: UUID(), workerID: "w", attempt: 2, expiresAt: Date())

    static func job(_ status: JobStatus, attempts: Int = 2, lastError: String? = nil, lockedBy: String? = nil) -> Job {
        Job(
            id: lease.jobID, queue: "default", sessionID: nil, prompt: "p", payload: "{}", status: status, priority: 0,
            runAt: Date(), attempts: attempts, maxAttempts: 3, lastError: lastError, createdAt: Date(), lockedBy: lockedBy)
    }

    @Test("a cancel, an earlier write whose answer was lost, and a lost lease are told apart")
    func explained() {
        func explain(_ outcome: JobOutcome, _ job: Job?) -> OutcomeWrite {
            OutcomeWrite(explaining: JobCompletion(lease: Self.lease, outcome: outcome), current: job)
        }
        // Before, each of these was logged as "the lease was lost to another worker".
        #expect(explain(.completed(result: "{}"), Self.job(.cancelled)) == .cancelled)
        #expect(explain(.completed(result: "{}"), Self.job(.completed)) == .alreadyApplied)
        #expect(explain(.failed(error: "boom"), Self.job(.failed, lastError: "boom")) == .alreadyApplied)
        #expect(explain(.retry(error: "boom", delay: .seconds(1)), Self.job(.pending, lastError: "boom")) == .alreadyApplied)
        #expect(explain(.released, Self.job(.pending, attempts: 1)) == .alreadyApplied)
        // A rescue leaves its own error; another worker's attempt another count or holder.
        #expect(explain(.retry(error: "boom", delay: .seconds(1)), Self.job(.pending, lastError: "lease expired: ...")) == .leaseLost)
        #expect(explain(.completed(result: "{}"), Self.job(.processing, attempts: 3, lockedBy: "other")) == .leaseLost)
        #expect(explain(.completed(result: "{}"), Self.job(.completed, attempts: 3)) == .leaseLost)
        #expect(explain(.completed(result: "{}"), nil) == .leaseLost)
        #expect(explain(.completed(result: "{}"), Self.job(.processing, attempts: 2, lockedBy: "other")) == .leaseLost)
        // Still held by this attempt, and refused all the same: its events were lost.
        #expect(explain(.completed(result: "{}"), Self.job(.processing, attempts: 2, lockedBy: "w")) == .eventsLost)
    }
}
