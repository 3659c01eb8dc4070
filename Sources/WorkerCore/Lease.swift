import Foundation

/// A worker's claim on one attempt of a job.
///
/// Every write a worker makes about a job it runs is conditional on its lease: the job's id,
/// the worker that holds it and the attempt number. A worker that lost its lease (it was
/// paused, or its lease expired and another worker took the job) changes nothing.
public struct Lease: Sendable, Hashable {
    public var jobID: UUID
    public var workerID: String
    /// The attempt this lease is for (the job's `attempts` after the claim).
    public var attempt: Int
    public var expiresAt: Date

    public init(jobID: UUID, workerID: String, attempt: Int, expiresAt: Date) {
        self.jobID = jobID
        self.workerID = workerID
        self.attempt = attempt
        self.expiresAt = expiresAt
    }
}
