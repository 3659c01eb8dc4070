import Foundation
import Logging
import PostgresNIO
import WorkerCore

/// Row-level security and the SQL API for a Supabase app (``PostgresSchema/supabaseStatements(maximumPendingJobsPerUser:)``).
extension PostgresJobStore {
    /// The statements ``secureForSupabase(maximumPendingJobsPerUser:)`` runs after the schema
    /// migration, for `JOBS_SCHEMA`.`JOBS_TABLE`, as SQL text to read before applying them
    /// (`worker migrate --supabase --print-sql`). Needs no connection.
    public static func supabaseSQL(
        schema: String, table: String, maximumPendingJobsPerUser: Int, userQueues: [String] = [NewJob.defaultQueue]
    ) -> String {
        PostgresSchema(schema: schema, table: table).supabaseStatements(maximumPendingJobsPerUser: maximumPendingJobsPerUser, userQueues: userQueues)
            .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) + ";" }
            .joined(separator: "\n\n")
    }

    /// Brings the schema up to date, then applies row-level security and creates the app's
    /// functions: idempotent, under the table's migration lock, in one transaction.
    /// - Parameters:
    ///   - maximumPendingJobsPerUser: `MAX_PENDING_JOBS_PER_USER`.
    ///   - userQueues: `SUPABASE_USER_QUEUES`, the queues `enqueue_…` takes.
    /// - Throws: ``JobStoreError/notPermitted(_:)`` naming what a Supabase database has and this
    ///   one lacks (the roles, `auth.uid()`), before anything is changed.
    public func secureForSupabase(maximumPendingJobsPerUser: Int, userQueues: [String] = [NewJob.defaultQueue]) async throws {
        try await translatingErrors {
            let missing = try await client.query(PostgresQuery(unsafeSQL: PostgresSchema.supabasePrerequisites), logger: logger)
                .collect().first?.decode([String].self) ?? []
            guard missing.isEmpty else {
                throw JobStoreError.notPermitted(
                    "row-level security for Supabase (worker migrate --supabase, SUPABASE_RLS=true) needs what a Supabase database has, "
                        + "and this one lacks \(missing.joined(separator: ", ")). Point DATABASE_URL at the Supabase project's database, "
                        + "or run `worker migrate` without --supabase (and unset SUPABASE_RLS) for a plain PostgreSQL")
            }
        }
        try await migrateTables()
        try await translatingErrors {
            let (statements, mark) = schema.supabaseSetup(maximumPendingJobsPerUser: maximumPendingJobsPerUser, userQueues: userQueues)
            var applied = false
            // Its `ALTER TABLE`s give way behind a long transaction as a migration's do.
            try await waitingForTableLocks { applied = try await client.withTransaction(logger: logger) { connection in
                _ = try await connection.query("SET LOCAL statement_timeout = 0", logger: logger)
                _ = try await connection.query("SELECT pg_advisory_xact_lock(hashtext(\(schema.tableLockKey)))", logger: logger)
                _ = try await connection.query(
                    PostgresQuery(unsafeSQL: "SET LOCAL lock_timeout = \(Self.migrationLockWait.inMilliseconds)"), logger: logger)
                // Applied already, as these statements would apply it: nothing to do, and no table
                // lock taken (the statements' `ALTER TABLE`s wait for every open transaction).
                let found = try await connection.query(PostgresQuery(unsafeSQL: schema.supabaseMarkQuery), logger: logger)
                    .collect().first?.decode(String?.self)
                guard found != mark else { return false }
                for statement in statements {
                    _ = try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
                return true
            } }
            if applied {
                // The events workers of an earlier version stored between version 10's fill-in
                // and the setup's trigger (their inserts waited behind the setup, then went in
                // without a user) get it now, so that no event of a user's job stays hidden from
                // them; from the commit on, the trigger gives each new one its user. After the
                // commit, not in the setup's transaction: there it read every event of every
                // user's job while the jobs table was locked (`ENABLE ROW LEVEL SECURITY` takes
                // it whole), at every re-apply, and claims, renewals and outcome writes waited.
                try await client.withTransaction(logger: logger) { connection in
                    _ = try await connection.query("SET LOCAL statement_timeout = 0", logger: logger)
                    _ = try await connection.query(PostgresQuery(unsafeSQL: schema.eventUserFillIn), logger: logger)
                }
            }
            let names = schema.supabaseFunctionNames
            logger.info(applied ? "Row-level security for Supabase applied" : "Row-level security for Supabase is in place", metadata: [
                "table": .string(table), "functions": .string("\(names.enqueue), \(names.cancel), \(names.retry)"),
                "maxPendingJobsPerUser": .stringConvertible(maximumPendingJobsPerUser), "userQueues": .string(userQueues.joined(separator: ",")),
            ])
        }
    }
}
