/// What became of one outcome the processor wrote, as the worker logs it.
public enum OutcomeWrite: Sendable, Hashable {
    /// The write applied it.
    case applied
    /// An earlier write of the same outcome applied it, whose answer never arrived (it timed
    /// out on the worker's side): the job is recorded as this worker meant.
    case alreadyApplied
    /// An operator cancelled the job while it ran; the cancel stands.
    case cancelled
    /// The lease is gone: the job was rescued after its lease expired, and may be running
    /// elsewhere.
    case leaseLost
    /// The lease still holds, but the outcome was refused: its ending event would follow events
    /// of the attempt that were lost in a database failure (``JobStore/record(_:)``). The job
    /// keeps the lease, no longer renewed, until the rescue gives it its next attempt.
    case eventsLost

    /// Whether the job is recorded with this worker's outcome.
    public var isRecorded: Bool { self == .applied || self == .alreadyApplied }

    /// Why `completion` was not applied, judged from the job as it is now (`nil`: gone).
    ///
    /// A write of the worker's own that applied leaves the job unlocked, in the outcome's status,
    /// with the attempt count and error that outcome sets; a rescue or another worker's attempt
    /// leaves something else (another attempt count, or the rescue's "lease expired" error).
    public init(explaining completion: JobCompletion, current job: Job?) {
        guard let job else {
            self = .leaseLost
            return
        }
        if job.status == .cancelled {
            self = .cancelled
            return
        }
        let attempt = completion.lease.attempt
        if job.status == .processing && job.lockedBy == completion.lease.workerID && job.attempts == attempt {
            self = .eventsLost
            return
        }
        let matches: Bool
        switch completion.outcome {
        case .completed:
            matches = job.status == .completed && job.attempts == attempt
        case .failed(let error):
            matches = job.status == .failed && job.attempts == attempt && job.lastError == error
        case .retry(let error, _):
            matches = job.status == .pending && job.attempts == attempt && job.lastError == error
        case .released:
            matches = job.status == .pending && job.attempts == attempt - 1
        case .deferred(let reason, _):
            matches = job.status == .pending && job.attempts == attempt - 1 && job.lastError == reason
        }
        self = matches && job.lockedBy == nil ? .alreadyApplied : .leaseLost
    }
}
