import Foundation
import Logging
import PostgresNIO
import Synchronization
import Testing
import WorkerCore
import WorkerTestSupport
@testable import WorkerPostgres

/// A store call the worker gave up on must not take effect later (``StoreDeadline``).
@Suite("PostgreSQL: bounded statements", .enabled(if: TestDatabase.isAvailable, "needs TEST_DATABASE_URL: run scripts/test"))
struct PostgresStatementBoundTests {
    /// Counts how often each job ran.
    final class Counter: JobHandler {
        let runs = Mutex<[UUID: Int]>([:])

        func handle(_ job: ClaimedJob, context: JobContext) async throws -> String {
            runs.withLock { $0[job.job.id, default: 0] += 1 }
            return "{}"
        }
    }

    @Test(
        "a table lock held past the store timeout: no abandoned claim takes jobs later; every max_attempts=1 job runs exactly once",
        arguments: [false, true]
    )
    func lockedTable(transactionPooler: Bool) async throws {
        var configuration = JobProcessorConfiguration(
            workerID: "bounded", maxConcurrentJobs: 4, pollInterval: .milliseconds(200), leaseDuration: .seconds(2))
        configuration.rescueInterval = .milliseconds(300)
        #expect(configuration.storeTimeout == .seconds(5))
        try await TestDatabase.withStore(
            transactionPooler: transactionPooler, statementTimeout: configuration.serverStatementTimeout
        ) { store in
            let handler = Counter()
            _ = try await store.enqueue((0..<12).map { NewJob(prompt: "j\($0)", maxAttempts: 1) })
            let processor = JobProcessor(store: store, handler: handler, configuration: configuration, logger: Logger(label: "test"))
            // Another client holds the lock.
            let url = try PostgresURL(try #require(TestDatabase.url))
            let locker = PostgresClient(configuration: .init(
                host: url.host, port: url.port, username: url.username, password: url.password, database: url.database,
                tls: PostgresJobStore.tls(for: url)))
            let logger = Logger(label: "test")
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { await locker.run() }
                defer { tasks.cancelAll() }
                try await locker.withConnection { connection in
                    _ = try await connection.query("BEGIN", logger: logger)
                    _ = try await connection.query(
                        PostgresQuery(unsafeSQL: "LOCK TABLE \(store.schema.table) IN ACCESS EXCLUSIVE MODE"), logger: logger)
                    try await whileRunning(processor) {
                        // Longer than the store timeout (5 s): claims the worker gave up on would
                        // still wait on the server, and take jobs when the lock goes.
                        try await Task.sleep(for: .seconds(8))
                        _ = try await connection.query("COMMIT", logger: logger)
                        try await waitUntil(timeout: .seconds(30)) {
                            let stats = try await store.stats()
                            return stats.completed + stats.failed == 12 && stats.pending == 0 && stats.processing == 0
                        }
                    }
                }
            }
            let stats = try await store.stats()
            #expect(stats.completed == 12, "a job failed without running: \(stats)")
            #expect(stats.failed == 0)
            let runs = handler.runs.withLock { $0 }
            #expect(runs.count == 12 && runs.values.allSatisfy { $0 == 1 }, "\(runs)")
        }
    }
}
