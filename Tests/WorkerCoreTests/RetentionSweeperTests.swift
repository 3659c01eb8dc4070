import Foundation
import Logging
import Testing
import WorkerTestSupport
@testable import WorkerCore

@Suite("RetentionSweeper")
struct RetentionSweeperTests {
    @Test("a sweep cut short by shutdown is no failure: nothing logged as one, the rest left for the next start")
    func shutdownMidSweep() async throws {
        try await withTemporarySQLiteStore { store in
            _ = try await store.enqueue((0..<30).map { NewJob(prompt: "old \($0)") })
            let claimed = try await store.claim(queues: ["default"], limit: 30, workerID: "w", leaseDuration: .seconds(30))
            _ = try await store.record(claimed.map { JobCompletion(lease: $0.lease, outcome: .completed(result: "{}")) })
            try await Task.sleep(for: .milliseconds(50))
            let messages = LogMessages()
            let logger = Logger(label: "test.retention") { _ in CapturingLogHandler(messages: messages) }
            // One job a batch, 50 ms between batches: a sweep of 1.5 s, cancelled well within it.
            let sweeper = RetentionSweeper(store: store, policy: .init(completed: .milliseconds(10), failed: nil), batchSize: 1, logger: logger)
            let sweep = Task { await sweeper.sweep(.completed, olderThan: .milliseconds(10)) }
            try await Task.sleep(for: .milliseconds(300))
            sweep.cancel()
            await sweep.value
            let left = try await store.stats().completed
            #expect(left > 0 && left < 30, "cut short: \(left) left")
            // Before: "Could not delete old jobs ... CancellationError", and a store error counted.
            #expect(!messages.all.contains { $0.contains("Could not delete old jobs") }, "\(messages.all)")
        }
    }
}
