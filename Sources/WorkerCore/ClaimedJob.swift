/// A job a worker has claimed, with the lease that lets it record the outcome.
public struct ClaimedJob: Sendable, Hashable {
    public var job: Job
    public var lease: Lease

    public init(job: Job, lease: Lease) {
        self.job = job
        self.lease = lease
    }
}
