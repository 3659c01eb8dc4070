import Foundation
import Logging
import PostgresNIO
import Synchronization
import Testing
import WorkerCore
@testable import WorkerPostgres

/// Calls whose caller is cancelled (a service told to stop, a time-out) while the server has not
/// answered: they end at once, closing their connection, instead of waiting for an answer that,
/// from a server gone without a reset, never comes.
@Suite("PostgreSQL: cancelled calls", .enabled(if: TestDatabase.isAvailable, "needs TEST_DATABASE_URL: run scripts/test"))
struct PostgresCancelledCallTests {
    final class Flag: Sendable {
        private let value = Atomic<Bool>(false)
        func set() { value.store(true, ordering: .sequentiallyConsistent) }
        var isSet: Bool { value.load(ordering: .sequentiallyConsistent) }
    }

    @Test("retention's delete, a job's read and the statistics, cancelled while they wait on the server, end at once")
    func cancelledWhileWaiting() async throws {
        try await TestDatabase.withStore { store in
            let id = try await store.enqueue([NewJob(prompt: "p")])[0]
            let calls: [(String, @Sendable () async throws -> Void)] = [
                ("retention", { _ = try await store.deleteFinished(status: .completed, olderThan: .zero, limit: 10) }),
                ("job", { _ = try await store.job(id: id) }),
                ("statistics", { _ = try await store.stats(window: nil) }),
            ]
            let logger = Logger(label: "test")
            for (name, call) in calls {
                let released = Flag()
                try await withThrowingTaskGroup(of: Void.self) { group in
                    let (held, holding) = AsyncStream<Void>.makeStream()
                    // The table locked for 5 s: the call waits on the server, as on one that stopped answering.
                    group.addTask {
                        try await store.client.withTransaction(logger: logger) { connection in
                            _ = try await connection.query(PostgresQuery(unsafeSQL: "LOCK TABLE \(store.schema.table) IN ACCESS EXCLUSIVE MODE"), logger: logger)
                            holding.yield()
                            _ = try await connection.query("SELECT pg_sleep(5)", logger: logger)
                            released.set()
                        }
                    }
                    for await _ in held { break }
                    let waiting = Task { try await call() }
                    try await Task.sleep(for: .milliseconds(300))
                    waiting.cancel()
                    _ = await waiting.result
                    // Before: the call went on waiting for the lock (for a dead server: for good).
                    #expect(!released.isSet, "\(name): the cancelled call waited for the server's answer")
                    try await group.waitForAll()
                }
            }
        }
    }
}
