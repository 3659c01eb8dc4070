import Foundation
import Logging
import Synchronization
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

    @Test("a batch that fails is tried at half the size until one works; the next round starts at twice the size that worked, growing back")
    func batchShrinksAndGrowsBack() async throws {
        try await withTemporarySQLiteStore { base in
            struct TooBig: Error {}
            let largest = Mutex(4)
            let limits = Mutex<[Int]>([])
            let store = InstrumentedJobStore(base, beforeDeleteFinished: { limit in
                limits.withLock { $0.append(limit) }
                if limit > largest.withLock({ $0 }) { throw TooBig() }
            })
            func finishJobs(_ count: Int) async throws {
                _ = try await base.enqueue((0..<count).map { NewJob(prompt: "old \($0)") })
                let claimed = try await base.claim(queues: ["default"], limit: count, workerID: "w", leaseDuration: .seconds(30))
                _ = try await base.record(claimed.map { JobCompletion(lease: $0.lease, outcome: .completed(result: "{}")) })
                try await Task.sleep(for: .milliseconds(30))
            }
            let sweeper = RetentionSweeper(store: store, policy: .init(completed: .milliseconds(10), failed: nil), batchSize: 16, logger: Logger(label: "test"))
            try await finishJobs(10)
            await sweeper.sweep(.completed, olderThan: .milliseconds(10))
            // 16 and 8 refused, 4 at a time then (4, 4, 2 left).
            #expect(limits.withLock { $0 } == [16, 8, 4, 4, 4], "\(limits.withLock { $0 })")
            #expect(try await base.stats().completed == 0)
            // The overload has passed: the next round tries twice the size that worked.
            largest.withLock { $0 = 16 }
            limits.withLock { $0 = [] }
            try await finishJobs(3)
            await sweeper.sweep(.completed, olderThan: .milliseconds(10))
            #expect(limits.withLock { $0 } == [8], "\(limits.withLock { $0 })")
            #expect(try await base.stats().completed == 0)
        }
    }
}
