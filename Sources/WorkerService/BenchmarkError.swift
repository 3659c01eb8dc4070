/// A benchmark whose run went wrong: its figures would not mean what they say.
public enum BenchmarkError: Error, CustomStringConvertible {
    case incomplete(completed: Int, jobs: Int)
    /// `worker bench sandbox` could not start its commands (the reason).
    case sandbox(String)
    /// `worker bench statements` on the embedded SQLite store: the statements it prints are
    /// PostgreSQL's, run through pgbench.
    case statementsNeedPostgres

    public var description: String {
        switch self {
        case .incomplete(let completed, let jobs):
            "only \(completed) of \(jobs) benchmark jobs ended completed; a job failed or an outcome was not written (run with LOG_LEVEL=debug to see why)"
        case .sandbox(let reason):
            "the sandbox benchmark could not run: \(reason)"
        case .statementsNeedPostgres:
            "`worker bench statements` prints the PostgreSQL statements of a job's claim and completion; set DATABASE_URL to a PostgreSQL database (the statements name its JOBS_SCHEMA and JOBS_TABLE)"
        }
    }
}
