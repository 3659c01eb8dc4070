/// How a ``JobProcessor`` claims and runs jobs.
public struct JobProcessorConfiguration: Sendable {
    /// Identifies this worker in leases and logs; unique per process.
    public var workerID: String
    /// The queues this worker claims from.
    public var queues: [String]
    /// At most this many jobs run at once.
    public var maxConcurrentJobs: Int
    /// How often to look for due jobs when no notification arrives.
    public var pollInterval: Duration
    /// How long a claim holds a job without renewal; renewed every third of it while the job runs.
    public var leaseDuration: Duration
    /// How long a graceful shutdown waits for running jobs before giving them back.
    public var shutdownTimeout: Duration
    /// Delays between failed attempts.
    public var retryPolicy: RetryPolicy
    /// How often to return jobs with expired leases (of dead workers) to the queue.
    public var rescueInterval: Duration
    /// When all slots were busy and one frees, how long to wait for half of them to be free
    /// before claiming, so that a busy worker claims in batches.
    public var claimBatchWindow: Duration = .milliseconds(2)
    /// The most job outcomes one store write carries. Claiming also pauses while this many (or
    /// `maxConcurrentJobs`, if more) finished jobs wait for their outcome to be written.
    public var outcomeBatchSize = 500
    /// After shutdown stops the jobs still running, how long to wait for their handlers to end
    /// (a command gets SIGTERM, then SIGKILL after its grace) and their release to be written.
    public var releaseGrace: Duration

    public init(
        workerID: String,
        queues: [String] = [NewJob.defaultQueue],
        maxConcurrentJobs: Int = 1,
        pollInterval: Duration = .seconds(10),
        leaseDuration: Duration = .seconds(30),
        shutdownTimeout: Duration = .seconds(30),
        retryPolicy: RetryPolicy = RetryPolicy(),
        rescueInterval: Duration? = nil,
        releaseGrace: Duration = .seconds(5)
    ) {
        self.releaseGrace = releaseGrace
        self.workerID = workerID
        self.queues = queues
        self.maxConcurrentJobs = max(1, maxConcurrentJobs)
        self.pollInterval = pollInterval
        self.leaseDuration = leaseDuration
        self.shutdownTimeout = shutdownTimeout
        self.retryPolicy = retryPolicy
        self.rescueInterval = rescueInterval ?? min(max(leaseDuration / 2, .milliseconds(100)), .seconds(15))
    }
}
