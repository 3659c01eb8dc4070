import Foundation
import Logging
import SQLiteNIO
import WorkerCore

/// Creating, upgrading and checking the schema of the jobs table.
extension SQLiteJobStore {
    /// How long a migration waits for another process's write lock, checking again each time
    /// the busy timeout runs out: that process is most likely migrating the same new file (a
    /// worker and a CLI command started together), which on a loaded machine took longer than
    /// the busy timeout (10 s), and this process gave up. PostgreSQL's migration waits for its
    /// lock as long as it takes, too.
    static let migrationLockWait = Duration.seconds(300)

    public func migrate() async throws {
        let deadline = ContinuousClock.now + Self.migrationLockWait
        while true {
            do {
                try await migrateOnce()
                return
            } catch let error as SQLiteError where [.busy, .locked].contains(error.reason) && ContinuousClock.now < deadline {
                logger.info("Waiting for another process's write lock to migrate the schema", metadata: ["path": .string(path), "table": .string(table)])
                try await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    private func migrateOnce() async throws {
        // Most starts find the schema current: a read, and no write lock taken.
        let recorded = try await recordedVersion()
        if recorded > SQLiteSchema.version { throw JobStoreError.schemaTooNew(found: recorded, supported: SQLiteSchema.version) }
        if recorded == SQLiteSchema.version { return }
        try await lock.withLock {
            try await inTransaction {
                _ = try await connection.query(
                    """
                    CREATE TABLE IF NOT EXISTS worker_schema_migrations (
                        table_name TEXT NOT NULL, version INTEGER NOT NULL,
                        applied_at INTEGER NOT NULL DEFAULT \(SQLiteSchema.nowMilliseconds), PRIMARY KEY (table_name, version))
                    """,
                    []
                )
                let current = try await connection.query(
                    "SELECT coalesce(max(version), 0) AS version FROM worker_schema_migrations WHERE table_name = ?1",
                    [.text(table)]
                ).first?.column("version")?.integer ?? 0
                if current > SQLiteSchema.version {
                    throw JobStoreError.schemaTooNew(found: Int(current), supported: SQLiteSchema.version)
                }
                let migrations = SQLiteSchema.migrations(table: table)
                if current < SQLiteSchema.version {
                    for version in (current + 1)...SQLiteSchema.version {
                        for statement in migrations[version] ?? [] {
                            // SQLite has no ADD COLUMN IF NOT EXISTS: a column already there
                            // (a table upgraded by hand, or a version record removed) is kept.
                            if let column = SQLiteSchema.addedColumn(in: statement) {
                                let existing = try await connection.query("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2", [.text(table), .text(column)])
                                if !existing.isEmpty { continue }
                            }
                            _ = try await connection.query(statement, [])
                        }
                        _ = try await connection.query(
                            "INSERT INTO worker_schema_migrations (table_name, version) VALUES (?1, ?2)",
                            [.text(table), .integer(version)]
                        )
                        logger.info("Applied schema migration", metadata: ["version": .stringConvertible(version), "table": .string(table)])
                    }
                }
            }
        }
    }

    public func verifySchema() async throws {
        let recorded = try await recordedVersion()
        if recorded > SQLiteSchema.version { throw JobStoreError.schemaTooNew(found: recorded, supported: SQLiteSchema.version) }
        if recorded < SQLiteSchema.version {
            throw JobStoreError.notPermitted(
                "the jobs table \(table) in \(path) is at schema version \(recorded) but this worker needs \(SQLiteSchema.version), and AUTO_MIGRATE=false: run `worker migrate` once, or set AUTO_MIGRATE=true"
            )
        }
    }

    /// The schema version recorded for this table; 0 when none is (or nothing was ever migrated).
    private func recordedVersion() async throws -> Int {
        try await lock.withLock {
            let exists = try await connection.query(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'worker_schema_migrations'", []
            )
            guard !exists.isEmpty else { return 0 }
            return Int(try await connection.query(
                "SELECT coalesce(max(version), 0) AS version FROM worker_schema_migrations WHERE table_name = ?1", [.text(table)]
            ).first?.column("version")?.integer ?? 0)
        }
    }
}
