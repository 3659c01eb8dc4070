import Foundation
import Logging
import PostgresNIO
import Testing
import WorkerCore
@testable import WorkerPostgres

/// A worker whose role may only read and write the jobs table (no DDL).
@Suite("PostgreSQL: least-privilege role", .enabled(if: TestDatabase.isAvailable, "needs TEST_DATABASE_URL: run scripts/test"))
struct PostgresPrivilegeTests {
    /// Runs `body` with a store for `table` logged in as a new role that has only `SELECT, INSERT,
    /// UPDATE, DELETE` on it (when it exists) and `SELECT` on the migrations table; drops the role after.
    static func asLimitedRole(table: String, admin: PostgresJobStore, _ body: (PostgresJobStore) async throws -> Void) async throws {
        let role = "limited_\(UUID().uuidString.prefix(8).lowercased())"
        // Under the migrations' lock, as other tests may be migrating at the same moment.
        try await admin.client.withTransaction(logger: Logger(label: "test")) { connection in
            _ = try await connection.query("SELECT pg_advisory_xact_lock(hashtext('mobvibe-worker:migrate'))", logger: Logger(label: "test"))
            _ = try await connection.query(
                "CREATE TABLE IF NOT EXISTS public.worker_schema_migrations (table_name text NOT NULL, version integer NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (table_name, version))",
                logger: Logger(label: "test"))
        }
        // And on its events table, as docs/WORKER_SERVICE.md says.
        let events = JobEvent.tableName(forJobsTable: table)
        try await TestDatabase.changeSharedPrivileges([
            "CREATE ROLE \(role) LOGIN",
            "GRANT USAGE ON SCHEMA public TO \(role)",
            "DO $$ BEGIN IF to_regclass('public.\(table)') IS NOT NULL THEN GRANT SELECT, INSERT, UPDATE, DELETE ON public.\(table) TO \(role); END IF; END $$",
            "DO $$ BEGIN IF to_regclass('public.\(events)') IS NOT NULL THEN GRANT SELECT, INSERT, UPDATE, DELETE ON public.\(events) TO \(role); END IF; END $$",
            "GRANT SELECT ON public.worker_schema_migrations TO \(role)",
        ], on: admin)
        func dropRole() async throws {
            try await TestDatabase.changeSharedPrivileges(["DROP OWNED BY \(role)", "DROP ROLE IF EXISTS \(role)"], on: admin)
        }
        var components = URLComponents(string: try #require(TestDatabase.url))!
        components.user = role
        components.password = nil
        let url = try PostgresURL(components.string!)
        var logger = Logger(label: "test.limited")
        logger.logLevel = .warning
        let store = try PostgresJobStore(url: url, table: table, statementTimeout: .seconds(5), logger: logger)
        do {
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { await store.run() }
                defer { tasks.cancelAll() }
                try await body(store)
            }
        } catch {
            try? await dropRole()
            throw error
        }
        try await dropRole()
    }

    @Test("a connection that answers it cannot write (a failover's old primary, now a replica, at the address) is closed: once a writable server is there, the next call works")
    func readOnlyConnectionClosed() async throws {
        let table = "jobs_ro_\(UUID().uuidString.prefix(6).lowercased())"
        try await TestDatabase.withStore(table: table) { admin in
            try await Self.asLimitedRole(table: table, admin: admin) { store in
                let role = store.url.username
                // The server this role reaches is read-only for now: its connections made meanwhile are.
                _ = try await TestDatabase.execute("ALTER ROLE \(role) SET default_transaction_read_only = on", on: admin)
                await #expect(throws: (any Error).self) { _ = try await store.enqueue([NewJob(prompt: "refused")]) }
                // A writable server again, for new connections.
                _ = try await TestDatabase.execute("ALTER ROLE \(role) RESET default_transaction_read_only", on: admin)
                // Before: the pool kept the read-only connection, and this failed too (25006), for good.
                let id = try await store.enqueue([NewJob(prompt: "written")])[0]
                #expect(try await store.job(id: id)?.status == .pending)
                _ = try await TestDatabase.execute("ALTER ROLE \(role) RESET ALL", on: admin)
            }
        }
    }

    @Test("on a migrated table, start-up's migration changes nothing and needs no DDL right; the role works the queue")
    func migratedTable() async throws {
        let table = "jobs_lp_\(UUID().uuidString.prefix(6).lowercased())"
        try await TestDatabase.withStore(table: table) { admin in
            try await Self.asLimitedRole(table: table, admin: admin) { store in
                // Before: CREATE SCHEMA/TABLE IF NOT EXISTS ran first and failed with 42501.
                try await store.migrate()
                try await store.verifySchema()
                let id = try await store.enqueue([NewJob(prompt: "p")])[0]
                let claimed = try await store.claim(queues: ["default"], limit: 1, workerID: "w", leaseDuration: .seconds(30))
                #expect(try await store.record(claimed.map { JobCompletion(lease: $0.lease, outcome: .completed(result: "{}")) }) == [true])
                #expect(try await store.job(id: id)?.status == .completed)
            }
        }
    }

    @Test("beside a table secured for Supabase (row-level security on the shared migrations table), the role of another table still reads its schema version and starts")
    func besideSupabaseTable() async throws {
        try await PostgresSupabaseTests.withSecuredStore { _ in
            let table = "jobs_lp_\(UUID().uuidString.prefix(6).lowercased())"
            try await TestDatabase.withStore(table: table) { admin in
                try await Self.asLimitedRole(table: table, admin: admin) { store in
                    // Before: the role read no version (no policy let it), took the table for
                    // unmigrated and failed on CREATE SCHEMA with 42501.
                    try await store.verifySchema()
                    try await store.migrate()
                    _ = try await store.enqueue([NewJob(prompt: "p")])
                    let claimed = try await store.claim(queues: ["default"], limit: 1, workerID: "w", leaseDuration: .seconds(30))
                    #expect(claimed.map(\.job.prompt) == ["p"])
                }
            }
        }
    }

    @Test("on a table not migrated yet, the role gets a clear error naming the privilege and `worker migrate`, not an outage")
    func unmigratedTable() async throws {
        let table = "jobs_lp_\(UUID().uuidString.prefix(6).lowercased())"
        try await TestDatabase.withStore(table: table, migrate: false) { admin in
            try await Self.asLimitedRole(table: table, admin: admin) { store in
                do {
                    try await store.migrate()
                    Issue.record("a role without CREATE migrated")
                } catch JobStoreError.notPermitted(let message) {
                    #expect(message.contains("42501") && message.contains("worker migrate"), "\(message)")
                } catch {
                    Issue.record("unexpected: \(String(reflecting: error))")
                }
                do {
                    try await store.verifySchema()
                    Issue.record("verifySchema passed on a missing table")
                } catch JobStoreError.notPermitted(let message) {
                    #expect(message.contains("worker migrate") && message.contains("AUTO_MIGRATE"), "\(message)")
                }
            }
        }
    }

    @Test("a role granted the jobs table before version 5 gets the same rights on the events table from the upgrade: its claims and events work")
    func upgradeCopiesGrants() async throws {
        let table = "jobs_lp_\(UUID().uuidString.prefix(6).lowercased())"
        try await TestDatabase.withStore(table: table) { admin in
            // The table as version 4 left it: no events table, versions 5 and later not recorded.
            _ = try await TestDatabase.execute("DROP TABLE public.\(JobEvent.tableName(forJobsTable: table))", on: admin)
            _ = try await TestDatabase.execute("DELETE FROM public.worker_schema_migrations WHERE table_name = '\(table)' AND version >= 5", on: admin)
            try await Self.asLimitedRole(table: table, admin: admin) { store in
                // The owner upgrades (the role was granted only the jobs table).
                try await admin.migrate()
                let id = try await store.enqueue([NewJob(prompt: "p")])[0]
                let claimed = try await store.claim(queues: ["default"], limit: 1, workerID: "w", leaseDuration: .seconds(30))
                try #require(claimed.count == 1)
                #expect(try await store.appendEvents([NewJobEvent(lease: claimed[0].lease, sequence: 1, kind: .output, data: #"{"text":"hi"}"#)]).isEmpty)
                #expect(try await store.events(jobID: id, after: 0, limit: 10).count == 1)
            }
        }
    }
}
