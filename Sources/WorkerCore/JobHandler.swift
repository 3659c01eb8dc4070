import Logging

/// Runs one attempt of a job.
///
/// Return the result as JSON text to complete the job; throw to fail the attempt (the
/// processor then applies the ``RetryPolicy``). The handler's task is cancelled when the
/// worker shuts down past its timeout or the job is cancelled: return or throw promptly then.
/// Errors are recorded as `last_error` using their `description`.
public protocol JobHandler: Sendable {
    func handle(_ job: ClaimedJob, context: JobContext) async throws -> String
}

/// What a handler gets besides the job.
public struct JobContext: Sendable {
    /// A logger carrying `jobId`, `sessionId`, `attempt` and `workerId`.
    public var logger: Logger
    /// The id of the worker running the job.
    public var workerID: String

    public init(logger: Logger, workerID: String) {
        self.logger = logger
        self.workerID = workerID
    }
}
