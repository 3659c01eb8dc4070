import Foundation
import Logging
import PostgresNIO
import WorkerCore

/// Row-level security and the SQL API for a Supabase app (``PostgresSchema/supabaseStatements(maximumPendingJobsPerUser:)``).
extension PostgresJobStore {
    /// The statements ``secureForSupabase(maximumPendingJobsPerUser:)`` runs after the schema
    /// migration, for `JOBS_SCHEMA`.`JOBS_TABLE`, as SQL text to read before applying them
    /// (`worker migrate --supabase --print-sql`). Needs no connection.
    public static func supabaseSQL(schema: String, table: String, maximumPendingJobsPerUser: Int) -> String {
        PostgresSchema(schema: schema, table: table).supabaseStatements(maximumPendingJobsPerUser: maximumPendingJobsPerUser)
            .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) + ";" }
            .joined(separator: "\n\n")
    }

    /// Brings the schema up to date, then applies row-level security and creates the app's
    /// functions: idempotent, under the table's migration lock, in one transaction.
    /// - Parameter maximumPendingJobsPerUser: `MAX_PENDING_JOBS_PER_USER`.
    /// - Throws: ``JobStoreError/notPermitted(_:)`` naming what a Supabase database has and this
    ///   one lacks (the roles, `auth.uid()`), before anything is changed.
    public func secureForSupabase(maximumPendingJobsPerUser: Int) async throws {
        try await migrate()
        try await translatingErrors {
            let missing = try await client.query(PostgresQuery(unsafeSQL: PostgresSchema.supabasePrerequisites), logger: logger)
                .collect().first?.decode([String].self) ?? []
            guard missing.isEmpty else {
                throw JobStoreError.notPermitted(
                    "row-level security for Supabase (worker migrate --supabase, SUPABASE_RLS=true) needs what a Supabase database has, "
                        + "and this one lacks \(missing.joined(separator: ", ")). Point DATABASE_URL at the Supabase project's database, "
                        + "or run `worker migrate` without --supabase (and unset SUPABASE_RLS) for a plain PostgreSQL")
            }
            try await client.withTransaction(logger: logger) { connection in
                _ = try await connection.query("SET LOCAL statement_timeout = 0", logger: logger)
                _ = try await connection.query("SELECT pg_advisory_xact_lock(hashtext(\(schema.tableLockKey)))", logger: logger)
                for statement in schema.supabaseStatements(maximumPendingJobsPerUser: maximumPendingJobsPerUser) {
                    _ = try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                }
            }
            let names = schema.supabaseFunctionNames
            logger.info("Row-level security for Supabase applied", metadata: [
                "table": .string(table), "functions": .string("\(names.enqueue), \(names.cancel), \(names.retry)"),
                "maxPendingJobsPerUser": .stringConvertible(maximumPendingJobsPerUser),
            ])
        }
    }
}
