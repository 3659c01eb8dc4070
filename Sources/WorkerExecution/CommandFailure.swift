import WorkerCore

/// Why a command run failed the attempt; the description becomes `last_error`.
public enum CommandFailure: Error, Sendable, CustomStringConvertible {
    case exited(code: Int32, stderrTail: String)
    /// Exited with a status listed in `JOB_PERMANENT_EXIT_CODES`: the job fails without retries.
    case exitedPermanently(code: Int32, stderrTail: String)
    case signaled(signal: Int32, stderrTail: String)
    case timedOut(after: Duration, stderrTail: String)
    /// A limit of ``JobLimits`` stopped the command.
    case limitReached(JobFailureReason, limit: String, stderrTail: String)
    case cannotStart(program: String, reason: String)
    case workdir(path: String, reason: String)

    public var description: String {
        switch self {
        case .exited(let code, let tail):
            "command exited with status \(code)" + Self.suffix(tail)
        case .exitedPermanently(let code, let tail):
            "command exited with status \(code), listed in JOB_PERMANENT_EXIT_CODES: not retried" + Self.suffix(tail)
        case .signaled(let signal, let tail):
            "command was killed by signal \(signal)" + Self.suffix(tail)
        case .timedOut(let after, let tail):
            "command timed out after \(after.inMilliseconds) ms (JOB_TIMEOUT_MS) and was stopped" + Self.suffix(tail)
        case .limitReached(let reason, let limit, let tail):
            "\(reason.rawValue): the command reached its limit (\(limit)) and was stopped" + Self.suffix(tail)
        case .cannotStart(let program, let reason):
            "cannot start \(program): \(reason)"
        case .workdir(let path, let reason):
            "cannot prepare the working directory \(path): \(reason)"
        }
    }

    private static func suffix(_ tail: String) -> String {
        tail.isEmpty ? "" : "; stderr: \(tail)"
    }
}

extension CommandFailure: ClassifiedJobError {
    public var failureReason: JobFailureReason {
        switch self {
        case .timedOut: .timeout
        case .limitReached(let reason, _, _): reason
        default: .error
        }
    }
}

extension CommandFailure: PermanentJobError {
    public var isPermanent: Bool {
        if case .exitedPermanently = self { return true }
        return false
    }
}

/// A working directory that cannot be made (a full or read-only disk under JOB_WORKDIR_ROOT) or a
/// command that cannot be started (its program missing, its control group or worker-launch
/// unavailable) is this worker's failure, not the job's: the job goes back to the queue without
/// using an attempt, and a worker that keeps failing so pauses and is not ready.
extension CommandFailure: WorkerFaultError {
    public var isWorkerFault: Bool {
        switch self {
        case .cannotStart, .workdir: true
        default: false
        }
    }
}
