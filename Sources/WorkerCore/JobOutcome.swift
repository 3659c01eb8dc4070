/// What became of one attempt, as the processor records it.
public enum JobOutcome: Sendable, Hashable {
    /// The handler succeeded; `result` is JSON text.
    case completed(result: String)
    /// The attempt failed and the job runs again after `delay`.
    case retry(error: String, delay: Duration)
    /// The attempt failed and no attempts are left.
    case failed(error: String)
    /// The worker gave the job back unfinished (shutdown): it is `pending` again and the
    /// attempt is not counted.
    case released
}

/// An outcome together with the lease that entitles the worker to record it.
public struct JobCompletion: Sendable, Hashable {
    public var lease: Lease
    public var outcome: JobOutcome

    public init(lease: Lease, outcome: JobOutcome) {
        self.lease = lease
        self.outcome = outcome
    }
}
