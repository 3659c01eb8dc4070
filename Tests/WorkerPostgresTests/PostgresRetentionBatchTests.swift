import Foundation
import Logging
import Testing
import WorkerTestSupport
@testable import WorkerCore
@testable import WorkerPostgres

@Suite("PostgreSQL retention batches", .enabled(if: TestDatabase.isAvailable, "needs TEST_DATABASE_URL: run scripts/test"))
struct PostgresRetentionBatchTests {
    @Test("old jobs whose events make a batch outlast the statement bound are deleted in smaller batches, not left for good")
    func batchShrinksPastTheStatementBound() async throws {
        try await TestDatabase.withStore { setup in
            let count = 40
            _ = try await setup.enqueue((0..<count).map { NewJob(prompt: "chatty \($0)") })
            let claimed = try await setup.claim(queues: ["default"], limit: count, workerID: "w", leaseDuration: .seconds(60))
            #expect(try await setup.record(claimed.map { JobCompletion(lease: $0.lease, outcome: .completed(result: "{}")) }).allSatisfy { $0 })
            // 40,000 events a job (four attempts' worth at JOB_EVENTS_LIMIT's default), finished 40 days ago.
            _ = try await TestDatabase.execute("""
                INSERT INTO \(setup.schema.eventsTable) (job_id, seq, attempt, kind, data)
                SELECT j.id, g, 1, 'output', '{}' FROM \(setup.schema.table) AS j CROSS JOIN generate_series(100, 40099) AS g
                """, on: setup)
            _ = try await TestDatabase.execute("UPDATE \(setup.schema.table) SET completed_at = now() - interval '40 days'", on: setup)
            // The worker's bound on every statement: deleting all 40 jobs (1.6 million events)
            // takes longer, one job's 40,000 far less.
            try await TestDatabase.withStore(table: setup.schema.tableName, migrate: false, statementTimeout: .milliseconds(500)) { store in
                let messages = LogMessages()
                let logger = Logger(label: "test.retention") { _ in CapturingLogHandler(messages: messages) }
                let sweeper = RetentionSweeper(store: store, policy: .init(completed: .seconds(86_400), failed: nil), batchSize: count, logger: logger)
                await sweeper.sweep(.completed, olderThan: .seconds(86_400))
                // Before: the first batch timed out, the sweep stopped, and every round did the same.
                #expect(try await store.stats().completed == 0, "\(messages.all)")
                #expect(!messages.all.contains { $0.contains("Could not delete old jobs") }, "\(messages.all)")
                let left = try await TestDatabase.execute("SELECT count(*) FROM \(store.schema.eventsTable)", on: store)
                #expect(try left.first?.decode(Int.self) == 0)
            }
        }
    }
}
