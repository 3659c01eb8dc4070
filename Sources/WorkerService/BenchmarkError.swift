/// A benchmark whose run went wrong: its figures would not mean what they say.
public enum BenchmarkError: Error, CustomStringConvertible {
    case incomplete(completed: Int, jobs: Int)

    public var description: String {
        switch self {
        case .incomplete(let completed, let jobs):
            "only \(completed) of \(jobs) benchmark jobs ended completed; a job failed or an outcome was not written (run with LOG_LEVEL=debug to see why)"
        }
    }
}
