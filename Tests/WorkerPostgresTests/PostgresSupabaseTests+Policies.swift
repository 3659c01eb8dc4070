import Foundation
import Logging
import PostgresNIO
import Testing
import WorkerCore
import WorkerTestSupport
@testable import WorkerPostgres

/// What a Supabase project may have done to the tables after, or before, `--supabase`.
extension PostgresSupabaseTests {
    @Test("row-level security switched off after --supabase (the table editor's switch) is on again at the next --supabase, not taken for in place")
    func rowSecuritySwitchedOffIsRestored() async throws {
        try await Self.withSecuredStore { store in
            let names = store.schema.supabaseFunctionNames
            let (alice, bob) = (UUID(), UUID())
            _ = try await Self.asClient(alice, on: store, "SELECT id FROM public.\(names.enqueue)('secret')")
            _ = try await TestDatabase.execute("ALTER TABLE \(store.schema.table) DISABLE ROW LEVEL SECURITY", on: store)
            #expect(try await Self.asClient(bob, on: store, "SELECT id FROM \(store.schema.table)").rows.count == 1, "open, as the switch left it")
            try await MigrationGate.shared.run { try await store.secureForSupabase(maximumPendingJobsPerUser: 10) }
            // Before: the mark on enqueue_… said "in place", and bob read alice's job.
            #expect(try await Self.asClient(bob, on: store, "SELECT id FROM \(store.schema.table)").rows.isEmpty)
            #expect(try await Self.asClient(alice, on: store, "SELECT id FROM \(store.schema.table)").rows.count == 1)
        }
    }

    @Test("a project's own permissive policy on the table (\"Enable read access for all users\") no longer lets a user read another's jobs or events")
    func foreignPermissivePolicy() async throws {
        try await Self.withSecuredStore { store in
            let names = store.schema.supabaseFunctionNames
            let schema = store.schema
            for table in [schema.table, schema.eventsTable] {
                _ = try await TestDatabase.execute("CREATE POLICY \"Enable read access for all users\" ON \(table) FOR SELECT USING (true)", on: store)
            }
            let (alice, bob) = (UUID(), UUID())
            let job = try #require(try Self.ids(try await Self.asClient(alice, on: store, "SELECT id FROM public.\(names.enqueue)('secret')")).first)
            _ = try await store.claim(queues: ["default"], limit: 1, workerID: "w", leaseDuration: .seconds(30))
            // Before: the two permissive policies were ORed, and bob read alice's job and its events.
            #expect(try await Self.asClient(bob, on: store, "SELECT id FROM \(schema.table)").rows.isEmpty)
            #expect(try await Self.asClient(bob, on: store, "SELECT seq FROM \(schema.eventsTable)").rows.isEmpty)
            #expect(try Self.ids(try await Self.asClient(alice, on: store, "SELECT id FROM \(schema.table)")) == [job])
            #expect(try await Self.asClient(alice, on: store, "SELECT seq FROM \(schema.eventsTable) WHERE job_id = '\(job)'").rows.count == 1)
            // anon has no right on the table at all (before, this read the refusal as "no rows").
            #expect(try await Self.asClient(nil, role: "anon", on: store, "SELECT id FROM \(schema.table)").sqlState == "42501")
            for table in [schema.table, schema.eventsTable] {
                _ = try await TestDatabase.execute("DROP POLICY \"Enable read access for all users\" ON \(table)", on: store)
            }
        }
    }

    @Test("enqueue_… without a queue puts the job on the first of SUPABASE_USER_QUEUES (it failed when that list had no default)")
    func defaultUserQueue() async throws {
        try await Self.withSecuredStore { store in
            try await MigrationGate.shared.run { try await store.secureForSupabase(maximumPendingJobsPerUser: 10, userQueues: ["free", "pro"]) }
            let names = store.schema.supabaseFunctionNames
            let answer = try await Self.asClient(UUID(), on: store, "SELECT queue FROM public.\(names.enqueue)('hello')")
            #expect(try answer.rows.first?.decode(String.self) == "free", "\(answer)")
        }
    }

    @Test("a migrations table an older release left open to the client roles is warned about at start, and closed by --supabase")
    func openMigrationsTableClosed() async throws {
        let schemaName = "oldproj_\(UUID().uuidString.prefix(8).lowercased())"
        try await TestDatabase.withStore(migrate: false) { admin in
            try await Self.prepareSupabase(on: admin)
            for statement in [
                "CREATE SCHEMA \(schemaName)", "GRANT USAGE ON SCHEMA \(schemaName) TO anon, authenticated",
                // As an older release made it, under Supabase's default grants.
                """
                CREATE TABLE \(schemaName).worker_schema_migrations (table_name text NOT NULL, version integer NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (table_name, version))
                """,
                "GRANT ALL ON \(schemaName).worker_schema_migrations TO anon, authenticated",
            ] { _ = try await TestDatabase.execute(statement, on: admin) }
            let messages = LogMessages()
            var logger = Logger(label: "test.migrations") { _ in CapturingLogHandler(messages: messages) }
            logger.logLevel = .warning
            let store = try PostgresJobStore(url: try PostgresURL(try #require(TestDatabase.url)), schema: schemaName, table: "coding_jobs", logger: logger)
            let failure: (any Error)? = await withTaskGroup(of: Void.self) { tasks in
                tasks.addTask { await store.run() }
                defer { tasks.cancelAll() }
                do {
                    // Before: nothing said that anon could add a row naming version 99, which
                    // stops every worker's start.
                    try await MigrationGate.shared.migrate(store)
                    #expect(messages.all.contains { $0.contains("no row-level security") && $0.contains("worker_schema_migrations") }, "\(messages.all)")
                    try await MigrationGate.shared.run { try await store.secureForSupabase(maximumPendingJobsPerUser: 10) }
                    let insert = try await Self.asClient(
                        nil, role: "anon", on: store, "INSERT INTO \(schemaName).worker_schema_migrations VALUES ('coding_jobs', 99)")
                    #expect(insert.sqlState == "42501", "anon wrote the migrations table: \(insert)")
                    try await Self.dropFunctions(of: store)
                    return nil
                } catch {
                    return error
                }
            }
            _ = try await TestDatabase.execute("DROP SCHEMA \(schemaName) CASCADE", on: admin)
            if let failure { Issue.record("\(String(reflecting: failure))") }
        }
    }
}
