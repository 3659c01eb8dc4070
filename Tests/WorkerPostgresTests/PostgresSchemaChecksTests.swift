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
        try await Self.withLegacyTable(
            "jobs_legacy", columns: "status text NOT NULL DEFAULT 'pending'", rows: "(prompt, status) VALUES ('old', 'queued'), ('fine', 'pending')"
        ) { store, table in
            try await store.migrate()
            let checks = try await Self.checks(table: table, on: store)
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

    /// Runs `body` on a store for a table made by hand as an older producer made it (`columns`
    /// after `id` and `prompt`, `rows` its `INSERT`'s column list and values), then migrated.
    static func withLegacyTable(
        _ prefix: String, columns: String, rows: String? = nil, _ body: (PostgresJobStore, String) async throws -> Void
    ) async throws {
        let table = "\(prefix)_\(UUID().uuidString.prefix(6).lowercased())"
        try await TestDatabase.withStore(table: table, migrate: false) { store in
            _ = try await TestDatabase.execute(
                "CREATE TABLE public.\(table) (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), prompt text NOT NULL, \(columns))", on: store)
            if let rows { _ = try await TestDatabase.execute("INSERT INTO public.\(table) \(rows)", on: store) }
            try await body(store, table)
        }
    }

    /// The names of the table's own checks.
    static func tableChecks(table: String, on store: PostgresJobStore) async throws -> [String] {
        try await TestDatabase.execute(
            "SELECT conname::text FROM pg_constraint WHERE conrelid = 'public.\(table)'::regclass AND contype = 'c' ORDER BY 1", on: store
        ).map { try $0.decode(String.self) }
    }

    /// The checks of the table and of its columns' domains (name, validated).
    static func checks(table: String, on store: PostgresJobStore) async throws -> [(String, Bool)] {
        try await TestDatabase.execute(
            """
            SELECT conname::text, convalidated FROM pg_constraint
            WHERE contype = 'c' AND (conrelid = 'public.\(table)'::regclass
               OR contypid IN (SELECT atttypid FROM pg_attribute WHERE attrelid = 'public.\(table)'::regclass AND attnum > 0))
            ORDER BY 1
            """,
            on: store
        ).map { try $0.decode((String, Bool).self) }
    }

    @Test("the queue name's and the payload's checks are on their columns' types, the rest on the table: each is checked once, all validated")
    func checksOnDomains() async throws {
        try await TestDatabase.withStore { store in
            let table = store.schema.tableName
            let onTable = try await Self.tableChecks(table: table, on: store)
            #expect(onTable == ["\(table)_max_attempts_check", "\(table)_priority_check", "\(table)_status_check"])
            let types = try await TestDatabase.execute(
                "SELECT attname::text, format_type(atttypid, NULL) FROM pg_attribute WHERE attrelid = 'public.\(table)'::regclass AND attname IN ('queue', 'payload') ORDER BY 1",
                on: store
            ).map { try $0.decode((String, String).self) }
            #expect(types.map(\.1) == ["\(table)_payload_object", "\(table)_queue_name"])
            let all = try await Self.checks(table: table, on: store)
            #expect(all.map(\.0) == ["max_attempts", "payload", "priority", "queue", "status"].map { "\(table)_\($0)_check" })
            #expect(all.allSatisfy { $0.1 })
            // The columns' values read as before (text and JSON, PostgreSQL sends the base type).
            _ = try await store.enqueue([NewJob(prompt: "p", queue: "q.1", payload: #"{"a":1}"#)])
            let claimed = try await store.claim(queues: ["q.1"], limit: 1, workerID: "w", leaseDuration: .seconds(30))
            #expect(claimed.map(\.job.queue) == ["q.1"])
            #expect(claimed.map(\.job.payload) == [#"{"a": 1}"#])
        }
    }

    @Test("a legacy row whose payload breaks the check (not validated) is still claimed and finished: an update of a job checks only what it sets")
    func legacyPayloadRowIsClaimed() async throws {
        try await Self.withLegacyTable(
            "jobs_legacy", columns: "payload jsonb NOT NULL DEFAULT '{}'", rows: "(prompt, payload) VALUES ('old', '[1, 2]')"
        ) { store, table in
            try await store.migrate()
            let checks = try await Self.checks(table: table, on: store)
            #expect(checks.first { $0.0 == "\(table)_payload_check" }?.1 == false)
            // New values are refused...
            await #expect(throws: (any Error).self) {
                try await TestDatabase.execute("INSERT INTO public.\(table) (prompt, payload) VALUES ('new', '[3]')", on: store)
            }
            // ...and the old row runs. With the check on the table, every update of the row
            // evaluated it: each claim of the queue failed (23514), and no job ran.
            let claimed = try await store.claim(queues: ["default"], limit: 5, workerID: "w", leaseDuration: .seconds(30))
            #expect(claimed.map(\.job.prompt) == ["old"])
            #expect(try await store.record(claimed.map { JobCompletion(lease: $0.lease, outcome: .completed(result: "{}")) }) == [true])
        }
    }

    @Test("a view on the queue column keeps its type: the migration still runs, the check stays on the table and still refuses")
    func viewKeepsTableCheck() async throws {
        try await Self.withLegacyTable("jobs_view", columns: "queue text NOT NULL DEFAULT 'default'") { store, table in
            _ = try await TestDatabase.execute("CREATE VIEW public.\(table)_queues AS SELECT DISTINCT queue FROM public.\(table)", on: store)
            try await store.migrate()
            let onTable = try await Self.tableChecks(table: table, on: store)
            #expect(onTable.contains("\(table)_queue_check"))
            #expect(!onTable.contains("\(table)_payload_check"), "the payload column has no view: it took its domain")
            await #expect(throws: (any Error).self) {
                try await TestDatabase.execute("INSERT INTO public.\(table) (prompt, queue) VALUES ('p', 'bad queue')", on: store)
            }
            #expect(try await store.enqueue([NewJob(prompt: "p")]).count == 1)
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
