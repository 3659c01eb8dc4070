import WorkerCore
import WorkerPostgres

/// `worker migrate --supabase`: row-level security and the app's functions for a Supabase
/// project (docs/WORKER_SERVICE.md, "Supabase"), on the PostgreSQL store only.
public enum SupabaseSecurity {
    /// Applies them to `store` (after bringing its schema up to date).
    /// - Throws: ``ConfigurationError`` when the store is not PostgreSQL; the store's error when
    ///   the database lacks what Supabase has (roles, `auth.uid()`).
    public static func apply(to store: any JobStore, maximumPendingJobsPerUser: Int, userQueues: [String] = [NewJob.defaultQueue]) async throws {
        guard let postgres = store as? PostgresJobStore else {
            throw ConfigurationError(
                variable: "DATABASE_URL", value: "(the embedded SQLite store)",
                expected: "a PostgreSQL database (postgres://...) for --supabase: row-level security is PostgreSQL's")
        }
        try await postgres.secureForSupabase(maximumPendingJobsPerUser: maximumPendingJobsPerUser, userQueues: userQueues)
    }

    /// The SQL it runs after the schema migration, for review before applying it.
    public static func sql(for configuration: WorkerConfiguration) -> String {
        PostgresJobStore.supabaseSQL(
            schema: configuration.jobsSchema, table: configuration.jobsTable, maximumPendingJobsPerUser: configuration.maxPendingJobsPerUser,
            userQueues: configuration.supabaseUserQueues)
    }
}
