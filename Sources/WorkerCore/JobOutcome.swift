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
    /// The job could not run here yet (``DeferredJobError``): it is `pending` again after
    /// `delay`, the attempt not counted, and `reason` its `last_error`.
    case deferred(reason: String, delay: Duration)
}

extension JobOutcome {
    /// Whether the attempt's number is given back (a release or a deferral): the job's next
    /// claim, by this worker too, holds the same lease (id, worker, attempt).
    var givesAttemptBack: Bool {
        switch self {
        case .released, .deferred: true
        case .completed, .retry, .failed: false
        }
    }

    /// When the job is claimable again after this outcome, if it is put back for later.
    var runsAgainAfter: Duration? {
        switch self {
        case .retry(_, let delay), .deferred(_, let delay): delay
        case .completed, .failed, .released: nil
        }
    }
}

/// An outcome together with the lease that entitles the worker to record it.
public struct JobCompletion: Sendable, Hashable {
    public var lease: Lease
    public var outcome: JobOutcome
    /// The status event that ends the attempt (`{"status": "completed", ...}`), stored with the
    /// outcome in the same statement, and only when the outcome applies: a reader never sees the
    /// job finished without it, nor it without the job finished.
    public var event: FinalEvent?
    /// What the attempt spent (added to the job's usage with the outcome); zero for most handlers.
    public var usage: JobUsage
    /// A `released` outcome of a job this worker could not run (``WorkerFaultError``), not of a
    /// shutdown: what its log line says. The processor's own note; stores ignore it.
    var releasedForWorkerFault = false

    /// The ending status event: its sequence number and data (a JSON object).
    public struct FinalEvent: Sendable, Hashable {
        public var sequence: Int64
        public var data: String
        /// The stored event this one must follow for the outcome to apply (no gap in the job's
        /// events, ``JobStore/record(_:)``); 0 when there is nothing to check: the attempt wrote
        /// no events of its own, so the one before is its `claimed` event, stored with the lease
        /// by the claim itself.
        public var follows: Int64

        /// `follows` defaults to the event just before this one.
        public init(sequence: Int64, data: String, follows: Int64? = nil) {
            self.sequence = sequence
            self.data = data
            self.follows = follows ?? sequence - 1
        }
    }

    public init(lease: Lease, outcome: JobOutcome, event: FinalEvent? = nil, usage: JobUsage = .zero) {
        self.lease = lease
        self.outcome = outcome
        self.event = event
        self.usage = usage
    }
}
