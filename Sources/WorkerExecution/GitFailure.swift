/// A git command of the change summary that did not give an answer. It never fails the job:
/// the handler logs it as a warning and leaves the summary out.
public enum GitFailure: Error, Sendable, CustomStringConvertible {
    case cannotStart(reason: String)
    case exited(arguments: [String], status: String, stderr: String)
    case timedOut(arguments: [String], after: Duration)

    public var description: String {
        switch self {
        case .cannotStart(let reason):
            "cannot run git: \(reason)"
        case .exited(let arguments, let status, let stderr):
            "git \(arguments.joined(separator: " ")) \(status)" + (stderr.isEmpty ? "" : ": \(stderr)")
        case .timedOut(let arguments, let after):
            "git \(arguments.joined(separator: " ")) did not finish within \(after.inMilliseconds) ms and was stopped"
        }
    }
}
