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

    @Test(
        "retention's delete, a job's read and the statistics, cancelled while they wait on the server, end at once",
        arguments: ["retention", "job", "statistics"])
    func cancelledWhileWaiting(_ name: String) async throws {
        try await TestDatabase.withStore { store in
            let id = try await store.enqueue([NewJob(prompt: "p")])[0]
            let call: @Sendable () async throws -> Void = switch name {
            case "retention": { _ = try await store.deleteFinished(status: .completed, olderThan: .zero, limit: 10) }
            case "job": { _ = try await store.job(id: id) }
            default: { _ = try await store.stats(window: nil) }
            }
            let logger = Logger(label: "test")
            let released = Flag(), ended = Flag()
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
                let waiting = Task {
                    defer { ended.set() }
                    try await call()
                }
                try await Task.sleep(for: .milliseconds(300))
                waiting.cancel()
                // Not `await waiting.result`: a call that does not end would hold the suite for good.
                let clock = ContinuousClock()
                let deadline = clock.now + .seconds(4)
                while !ended.isSet && clock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
                // Before: the call went on waiting for the lock (for a dead server: for good).
                #expect(ended.isSet && !released.isSet, "\(name): the cancelled call waited for the server's answer")
                try await group.waitForAll()
            }
        }
    }
}
