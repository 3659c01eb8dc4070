import Foundation
import Logging
import PostgresNIO
import WorkerCore

/// Creating, upgrading and checking the schema of the jobs table.
extension PostgresJobStore {
    public func migrate() async throws {
        try await migrateTables()
        try await translatingErrors { try await warnAboutOpenTables() }
    }

    /// ``migrate()`` without its warning about tables open to Supabase's client roles: for
    /// ``secureForSupabase(maximumPendingJobsPerUser:userQueues:)``, which closes them next (the
    /// warning, just before the tables it names were secured, told the operator to do what the
    /// command was doing).
    func migrateTables() async throws {
        try await translatingErrors {
            // Most starts find the schema current: one read and no DDL, so a role with only
            // SELECT, INSERT, UPDATE and DELETE on a migrated table starts fine.
            let recorded = try await recordedVersion()
            if recorded > PostgresSchema.version {
                throw JobStoreError.schemaTooNew(found: recorded, supported: PostgresSchema.version)
            }
            guard recorded < PostgresSchema.version else { return }
            // What all tables share (their schema, the migrations table), once, under one lock
            // for the database; then this table under a lock of its own, so that migrations of
            // different tables (many in a test suite, a few in a database holding several
            // queues) do not queue behind each other.
            let sharedExist = try await client.query(
                "SELECT to_regclass(\(schema.migrationsTable)) IS NOT NULL", logger: logger
            ).collect().first?.decode(Bool.self) ?? false
            if !sharedExist { try await client.withTransaction(logger: logger) { connection in
                _ = try await connection.query("SET LOCAL statement_timeout = 0", logger: logger)
                _ = try await connection.query("SELECT pg_advisory_xact_lock(hashtext(\(schema.lockKey)))", logger: logger)
                // Again under the lock: workers starting together all found it missing, and each
                // then revoked the client roles' rights on the table the first had made, at the
                // same time as whatever else changed them ("tuple concurrently updated").
                let madeMeanwhile = try await connection.query(
                    "SELECT to_regclass(\(schema.migrationsTable)) IS NOT NULL", logger: logger
                ).collect().first?.decode(Bool.self) ?? false
                guard !madeMeanwhile else { return }
                _ = try await connection.query(
                    PostgresQuery(unsafeSQL: "CREATE SCHEMA IF NOT EXISTS \"\(schema.schemaName)\""), logger: logger)
                _ = try await connection.query(
                    PostgresQuery(unsafeSQL: """
                        CREATE TABLE IF NOT EXISTS \(schema.migrationsTable) (
                            table_name text NOT NULL, version integer NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(),
                            PRIMARY KEY (table_name, version))
                        """),
                    logger: logger
                )
                try await Self.closeToClients([schema.migrationsTable], on: connection, logger: logger)
            } }
            try await waitingForTableLocks { try await client.withTransaction(logger: logger) { connection in
                // A migration may rewrite or validate a big table: no statement bound for it.
                _ = try await connection.query("SET LOCAL statement_timeout = 0", logger: logger)
                _ = try await connection.query("SELECT pg_advisory_xact_lock(hashtext(\(schema.tableLockKey)))", logger: logger)
                // Its DDL waits at most this long for a lock (see `waitingForTableLocks`).
                _ = try await connection.query(
                    PostgresQuery(unsafeSQL: "SET LOCAL lock_timeout = \(Self.migrationLockWait.inMilliseconds)"), logger: logger)
                // Again under the lock: another worker may have migrated meanwhile.
                let rows = try await connection.query(
                    "SELECT coalesce(max(version), 0) FROM \(unescaped: schema.migrationsTable) WHERE table_name = \(schema.tableName)",
                    logger: logger
                ).collect()
                let current = try rows.first?.decode(Int.self) ?? 0
                if current > PostgresSchema.version {
                    throw JobStoreError.schemaTooNew(found: current, supported: PostgresSchema.version)
                }
                guard current < PostgresSchema.version else { return }
                let existed = try await connection.query(
                    "SELECT to_regclass(\(schema.table)) IS NOT NULL, to_regclass(\(schema.eventsTable)) IS NOT NULL", logger: logger
                ).collect().first?.decode((Bool, Bool).self) ?? (false, false)
                for version in (current + 1)...PostgresSchema.version {
                    for statement in schema.migrations[version] ?? [] {
                        _ = try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                    }
                    _ = try await connection.query(
                        "INSERT INTO \(unescaped: schema.migrationsTable) (table_name, version) VALUES (\(schema.tableName), \(version))",
                        logger: logger
                    )
                    logger.info("Applied schema migration", metadata: ["version": .stringConvertible(version), "table": .string(table)])
                }
                // Tables created just now: closed to Supabase's client roles before anyone sees them.
                try await Self.closeToClients(
                    (existed.0 ? [] : [schema.table]) + (existed.1 ? [] : [schema.eventsTable]), on: connection, logger: logger)
            } }
            try await warnAboutUnvalidatedChecks()
        }
    }

    /// How long a migration's statement waits for a table lock before the migration is rolled
    /// back and tried again (``waitingForTableLocks(_:)``).
    static let migrationLockWait = Duration.seconds(3)
    /// How long a migration keeps trying before it gives up, naming what holds the lock.
    static let migrationLockPatience = Duration.seconds(300)

    /// Runs a migration, again while its DDL cannot get a table lock in ``migrationLockWait``.
    ///
    /// DDL waits behind any open transaction on the table (a producer's, a long report), and
    /// while it waits every claim, renewal and outcome write queues behind it: during a rolling
    /// upgrade a migration behind a long transaction stopped every worker on the table, past
    /// their leases. Now it gives way within a few seconds (`lock_timeout`, SQLSTATE 55P03),
    /// the others go on, and it tries again shortly.
    func waitingForTableLocks(_ migration: () async throws -> Void) async throws {
        let deadline = ContinuousClock.now + Self.migrationLockPatience
        var tries = 0
        while true {
            do {
                return try await migration()
            } catch where Self.sqlState(of: error) == "55P03" && ContinuousClock.now < deadline {
                tries += 1
                logger.warning(
                    "Schema migration waits for a lock another transaction holds on the jobs table; giving way to the workers and trying again",
                    metadata: ["table": .string(table), "tries": .stringConvertible(tries), "error": .string(Self.describe(error))])
                try await Task.sleep(for: .seconds(2))
            }
        }
    }

    public func verifySchema() async throws {
        try await translatingErrors {
            let recorded = try await recordedVersion()
            if recorded > PostgresSchema.version {
                throw JobStoreError.schemaTooNew(found: recorded, supported: PostgresSchema.version)
            }
            if recorded < PostgresSchema.version {
                throw JobStoreError.notPermitted(
                    recorded == 0
                        ? "the jobs table \(table) has no schema yet and AUTO_MIGRATE=false: run `worker migrate` once (as a role that may create it), or set AUTO_MIGRATE=true"
                        : "the jobs table \(table) is at schema version \(recorded) but this worker needs \(PostgresSchema.version), and AUTO_MIGRATE=false: run `worker migrate` once (as the table's owner), or set AUTO_MIGRATE=true"
                )
            }
        }
    }

    /// The schema version recorded for this table: 0 when nothing is recorded (or the
    /// migrations table does not exist). A read only, which any role that can use the table may do.
    private func recordedVersion() async throws -> Int {
        let exists = try await client.query(
            "SELECT to_regclass(\(schema.migrationsTable)) IS NOT NULL", logger: logger
        ).collect().first?.decode(Bool.self) ?? false
        guard exists else { return 0 }
        return try await client.query(
            "SELECT coalesce(max(version), 0) FROM \(unescaped: schema.migrationsTable) WHERE table_name = \(schema.tableName)",
            logger: logger
        ).collect().first?.decode(Int.self) ?? 0
    }

    /// Logs the checks that existing rows kept from being validated (they hold for new rows),
    /// the table's own and those of its columns' domains (``PostgresSchema/valueDomains``), and
    /// the columns that could not take their domain and so keep their check on the table.
    private func warnAboutUnvalidatedChecks() async throws {
        let rows = try await client.query(
            """
            SELECT c.conname::text, CASE WHEN c.contypid <> 0 THEN format_type(c.contypid, NULL) ELSE '' END
            FROM pg_constraint AS c
            WHERE c.contype = 'c' AND NOT c.convalidated
              AND (c.conrelid = to_regclass(\(table))
                   OR c.contypid IN (SELECT atttypid FROM pg_attribute WHERE attrelid = to_regclass(\(table)) AND attnum > 0))
            ORDER BY 1
            """,
            logger: logger
        ).collect()
        for row in rows {
            let (name, domain) = try row.decode((String, String).self)
            logger.warning(
                "Existing rows violate a check of the jobs table; it holds for new and updated rows only until they are fixed",
                metadata: [
                    "constraint": .string(name), "table": .string(table),
                    "fix": .string(
                        domain.isEmpty
                            ? "correct the rows, then ALTER TABLE \(table) VALIDATE CONSTRAINT \"\(name)\""
                            : "correct the rows, then ALTER DOMAIN \(domain) VALIDATE CONSTRAINT \"\(name)\""),
                ]
            )
        }
        let kept = try await client.query(
            """
            SELECT a.attname::text FROM pg_attribute AS a
            WHERE a.attrelid = to_regclass(\(table)) AND a.attname = ANY(\(schema.valueDomains.map(\.column)))
              AND a.atttypid <> ALL(ARRAY(SELECT coalesce(to_regtype(t)::oid, 0) FROM unnest(\(schema.valueDomains.map(\.type))::text[]) AS t))
            ORDER BY 1
            """,
            logger: logger
        ).collect()
        for row in kept {
            let column = try row.decode(String.self)
            logger.notice(
                "A column of the jobs table keeps its check on the table: a view, rule or policy on it kept its type from changing, so every update of a job evaluates the check",
                metadata: [
                    "column": .string(column), "table": .string(table),
                    "fix": .string("drop what depends on the column, DELETE FROM \(schema.migrationsTable) WHERE table_name = '\(schema.tableName)' AND version = 8, run `worker migrate`, then create it again"),
                ]
            )
        }
    }
}
