/// A job a worker has claimed, with the lease that lets it record the outcome.
public struct ClaimedJob: Sendable, Hashable {
    public var job: Job
    public var lease: Lease
    /// The sequence number of this claim's `claimed` event, which the claim stored after the
    /// job's earlier events: this attempt's events continue from the next.
    public var lastEventSequence: Int64

    public init(job: Job, lease: Lease, lastEventSequence: Int64 = 0) {
        self.job = job
        self.lease = lease
        self.lastEventSequence = lastEventSequence
    }
}

extension Array where Element == ClaimedJob {
    /// Sorts claimed jobs into claim order: priority (higher first), then `runAt`, then id (ids
    /// the worker generates are time-ordered, so this is first in, first out).
    /// Drivers return rows of one claim statement in no particular order; when they happen to
    /// be in order already (the usual case), this only checks.
    public mutating func sortIntoClaimOrder() {
        let inOrder = { (a: ClaimedJob, b: ClaimedJob) -> Bool in
            if a.job.priority != b.job.priority { return a.job.priority > b.job.priority }
            if a.job.runAt != b.job.runAt { return a.job.runAt < b.job.runAt }
            return a.job.id.precedes(b.job.id)
        }
        if indices.dropFirst().allSatisfy({ !inOrder(self[$0], self[$0 - 1]) }) { return }
        sort(by: inOrder)
    }
}
