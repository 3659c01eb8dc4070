import Foundation
import Logging
import PostgresNIO
import Testing
import WorkerCore
import WorkerTestSupport
@testable import WorkerPostgres

/// The throwaway PostgreSQL that `scripts/with-postgres` starts (`TEST_DATABASE_URL`).
enum TestDatabase {
    static let url: String? = ProcessInfo.processInfo.environment["TEST_DATABASE_URL"]
    static var isAvailable: Bool { url != nil }

    /// Runs `body` with a store on a fresh table of its own (dropped afterwards), its pool running.
    static func withStore(
        table: String = "jobs_\(UUID().uuidString.prefix(8).lowercased())",
        migrate: Bool = true,
        transactionPooler: Bool = false,
        maximumConnections: Int = 10,
        statementTimeout: Duration? = nil,
        sessionOnFailure: SessionFailurePolicy = .continue,
        _ body: (PostgresJobStore) async throws -> Void
    ) async throws {
        var text = try #require(Self.url, "run the suite with scripts/test")
        // `pgbouncer=true` makes the store behave as behind a transaction pooler (unnamed statements only).
        if transactionPooler { text += text.contains("?") ? "&pgbouncer=true" : "?pgbouncer=true" }
        let url = try PostgresURL(text)
        if transactionPooler { #expect(url.isTransactionPooler) }
        var logger = Logger(label: "test.postgres")
        logger.logLevel = .warning
        let store = try PostgresJobStore(
            url: url, table: table, maximumConnections: maximumConnections, statementTimeout: statementTimeout,
            sessionOnFailure: sessionOnFailure, logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { await store.run() }
            defer { tasks.cancelAll() }
            do {
                if migrate { try await MigrationGate.shared.migrate(store) }
                try await body(store)
            } catch {
                try? await drop(table, on: store.client)
                throw error
            }
            try await drop(table, on: store.client)
        }
    }

    static func drop(_ table: String, on client: PostgresClient) async throws {
        _ = try await client.query(PostgresQuery(unsafeSQL: "DROP TABLE IF EXISTS \"public\".\"\(table)\" CASCADE")).collect()
        _ = try await client.query(PostgresQuery(unsafeSQL: "DROP FUNCTION IF EXISTS \"public\".\"\(table)_notify\"() CASCADE")).collect()
        _ = try await client.query(PostgresQuery(unsafeSQL: "DROP FUNCTION IF EXISTS \"public\".\"\(table)_new_id\"() CASCADE")).collect()
        // The columns' domains (schema version 8) outlive their table.
        _ = try await client.query(PostgresQuery(unsafeSQL: "DROP DOMAIN IF EXISTS \"public\".\"\(table)_queue_name\", \"public\".\"\(table)_payload_object\"")).collect()
        // (Absent on a fresh cluster when the case never migrated in `public`: one run alone failed here.)
        _ = try await client.query(PostgresQuery(unsafeSQL: """
            DO $$ BEGIN
                IF to_regclass('public.worker_schema_migrations') IS NOT NULL THEN
                    DELETE FROM public.worker_schema_migrations WHERE table_name = '\(table)';
                END IF;
            END $$
            """)).collect()
    }

    /// Runs `statements` in one transaction under ``sharedPrivilegesLock``, with the migrations
    /// table (when there is one) locked against other changes too: `worker migrate --supabase`
    /// changes its privileges under a lock of the table (ALTER TABLE) rather than this one.
    static func changeSharedPrivileges(_ statements: [String], on store: PostgresJobStore) async throws {
        let logger = Logger(label: "test")
        try await store.client.withTransaction(logger: logger) { connection in
            _ = try await connection.query(PostgresQuery(unsafeSQL: sharedPrivilegesLock), logger: logger)
            _ = try await connection.query(
                "DO $$ BEGIN IF to_regclass('public.worker_schema_migrations') IS NOT NULL THEN LOCK TABLE public.worker_schema_migrations IN SHARE ROW EXCLUSIVE MODE; END IF; END $$",
                logger: logger)
            for statement in statements {
                _ = try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
            }
        }
    }

    static func execute(_ sql: String, on store: PostgresJobStore) async throws -> [PostgresRow] {
        try await store.client.query(PostgresQuery(unsafeSQL: sql)).collect()
    }
}

/// Lets the suite's stores migrate their scratch tables one at a time. Each table has a
/// migration lock of its own, so dozens of conformance cases starting together would otherwise
/// run their DDL all at once and starve the rest of the suite (SQLite's fsyncs, timing-sensitive
/// processor tests) on two cores; one at a time is how a real deployment migrates anyway.
actor MigrationGate {
    static let shared = MigrationGate()
    private var busy = false
    private var waiting: [CheckedContinuation<Void, Never>] = []

    func migrate(_ store: PostgresJobStore) async throws {
        try await run { try await store.migrate() }
    }

    /// Runs `body` (schema changes) when no other store of the suite is changing its schema.
    func run(_ body: () async throws -> Void) async throws {
        if busy {
            await withCheckedContinuation { waiting.append($0) }
        } else {
            busy = true
        }
        defer {
            if waiting.isEmpty { busy = false } else { waiting.removeFirst().resume() }
        }
        try await body()
    }
}
