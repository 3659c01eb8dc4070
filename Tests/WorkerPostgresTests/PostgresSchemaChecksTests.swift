import Foundation
import Logging
import PostgresNIO
import Testing
import WorkerCore
@testable import WorkerPostgres

/// The table's own checks, for rows written by hand or by another producer.
@Suite("PostgreSQL: table checks", .enabled(if: TestDatabase.isAvailable, "needs TEST_DATABASE_URL: run scripts/test"))
struct PostgresSchemaChecksTests {
    static func sqlState(_ error: any Error) -> String? {
        (error as? PSQLError)?.serverInfo?[.sqlState]
    }

    @Test(
        "a hand-written row with an unknown status, a bad queue name, a priority out of range, no attempts or a non-object payload is refused at insert",
        arguments: [
            "(prompt, status) VALUES ('p', 'Pending')",
            "(prompt, status) VALUES ('p', 'queued')",
            "(prompt, status) VALUES ('p', 'RUNNING')",
            "(prompt, queue) VALUES ('p', 'bad queue')",
            "(prompt, queue) VALUES ('p', '')",
            "(prompt, priority) VALUES ('p', 40000)",
            "(prompt, max_attempts) VALUES ('p', 0)",
            "(prompt, payload) VALUES ('p', '[1,2]')",
        ]
    )
    func refusedRows(_ values: String) async throws {
        try await TestDatabase.withStore { store in
            do {
                _ = try await TestDatabase.execute("INSERT INTO \(store.schema.table) \(values)", on: store)
                Issue.record("PostgreSQL took \(values)")
            } catch {
                #expect(Self.sqlState(error) == "23514", "\(String(reflecting: error))")
            }
            // A valid hand-written row still goes in.
            _ = try await TestDatabase.execute("INSERT INTO \(store.schema.table) (prompt, queue, priority) VALUES ('ok', 'a.b:c-d_e', -5)", on: store)
            #expect(try await store.stats().pending == 1)
        }
    }

    @Test("a legacy table whose rows break a check still migrates; the check holds for new rows and waits to be validated")
    func legacyRowsKeepCheckUnvalidated() async throws {
        let table = "jobs_legacy_\(UUID().uuidString.prefix(6).lowercased())"
        try await TestDatabase.withStore(table: table, migrate: false) { store in
            _ = try await TestDatabase.execute(
                "CREATE TABLE public.\(table) (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), prompt text NOT NULL, status text NOT NULL DEFAULT 'pending')",
                on: store)
            _ = try await TestDatabase.execute("INSERT INTO public.\(table) (prompt, status) VALUES ('old', 'queued'), ('fine', 'pending')", on: store)
            try await store.migrate()
            let checks = try await TestDatabase.execute(
                "SELECT conname::text, convalidated FROM pg_constraint WHERE conrelid = 'public.\(table)'::regclass AND contype = 'c' ORDER BY 1",
                on: store
            ).map { try $0.decode((String, Bool).self) }
            #expect(checks.count == 5)
            #expect(checks.first { $0.0 == "\(table)_status_check" }?.1 == false)
            let others = checks.filter { $0.0 != "\(table)_status_check" }
            #expect(others.allSatisfy { $0.1 })
            await #expect(throws: (any Error).self) {
                try await TestDatabase.execute("INSERT INTO public.\(table) (prompt, status) VALUES ('new', 'queued')", on: store)
            }
            #expect(try await store.claim(queues: ["default"], limit: 5, workerID: "w", leaseDuration: .seconds(5)).map(\.job.prompt) == ["fine"])
        }
    }

    @Test("enqueue refuses a bad queue name or priority before the database does")
    func enqueueValidates() async throws {
        try await TestDatabase.withStore { store in
            for job in [NewJob(prompt: "p", queue: "bad queue"), NewJob(prompt: "p", priority: 32768), NewJob(prompt: "p", queue: String(repeating: "q", count: 65))] {
                await #expect(throws: JobStoreError.self) { try await store.enqueue([job]) }
            }
            let pending = try await store.stats().pending
            #expect(pending == 0)
        }
    }
}
