import Foundation
import Logging
import PostgresNIO
import Testing
import WorkerCore
@testable import WorkerPostgres

extension PostgresJobStoreTests {
    @Test("retention never deletes a job retried as it runs: the retried row's new state is checked, not only the state the statement first saw")
    func retentionSparesRetriedJob() async throws {
        try await TestDatabase.withStore { store in
            let table = "public.\(store.schema.tableName)"
            let id = try await store.enqueue([NewJob(prompt: "old")])[0]
            _ = try await TestDatabase.execute(
                "UPDATE \(table) SET status = 'completed', attempts = 1, completed_at = now() - interval '30 days' WHERE id = '\(id)'", on: store)
            let logger = Logger(label: "test.retry")
            try await store.client.withConnection { retry in
                // An operator's retry, committed after the retention statement has started.
                _ = try await retry.query("BEGIN", logger: logger)
                _ = try await retry.query(
                    PostgresQuery(unsafeSQL: "UPDATE \(table) SET status = 'pending', completed_at = NULL WHERE id = '\(id)'"), logger: logger
                ).collect()
                try await withThrowingTaskGroup(of: Int?.self) { tasks in
                    tasks.addTask { try await store.deleteFinished(status: .completed, olderThan: .seconds(7 * 86_400), limit: 100) }
                    // Time for the statement to reach the row (before: it waited for it, then
                    // deleted the retried job).
                    try await Task.sleep(for: .milliseconds(500))
                    _ = try await retry.query("COMMIT", logger: logger)
                    let deleted = try await tasks.next() ?? nil
                    #expect(deleted == 0)
                }
            }
            #expect(try await store.job(id: id)?.status == .pending, "the retried job is kept")
            // Once it has ended and is old again, it goes.
            _ = try await TestDatabase.execute(
                "UPDATE \(table) SET status = 'completed', completed_at = now() - interval '30 days' WHERE id = '\(id)'", on: store)
            #expect(try await store.deleteFinished(status: .completed, olderThan: .seconds(7 * 86_400), limit: 100) == 1)
        }
    }
}
