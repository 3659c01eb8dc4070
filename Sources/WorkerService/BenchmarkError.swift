/// A benchmark whose run went wrong: its figures would not mean what they say.
public enum BenchmarkError: Error, CustomStringConvertible {
    case incomplete(completed: Int, jobs: Int)
    /// `worker bench sandbox` could not start its commands (the reason).
    case sandbox(String)

    public var description: String {
        switch self {
        case .incomplete(let completed, let jobs):
            "only \(completed) of \(jobs) benchmark jobs ended completed; a job failed or an outcome was not written (run with LOG_LEVEL=debug to see why)"
        case .sandbox(let reason):
            "the sandbox benchmark could not run: \(reason)"
        }
    }
}
