import WorkerPostgres

extension Benchmark {
    /// `worker bench statements`: the claim and completion statements `worker run` prepares for
    /// the configured table, with their parameters as `$n`. `scripts/bench-floor` and
    /// `scripts/bench-peers` run them through pgbench, a client that costs next to nothing, to
    /// measure the most PostgreSQL can do with a job's work on this machine: the ceiling of any
    /// worker running these statements (docs/BENCHMARKS.md, "The floor").
    public static func hotPathStatements(configuration: WorkerConfiguration) throws -> [(name: String, sql: String)] {
        guard case .postgres = configuration.store else { throw BenchmarkError.statementsNeedPostgres }
        return PostgresJobStore.hotPathStatements(
            schema: configuration.jobsSchema, table: configuration.jobsTable, sessionOnFailure: configuration.sessionOnFailure)
    }
}
