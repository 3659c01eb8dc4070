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
    /// How long a worker whose last jobs it could not run (``WorkerFaultError``) leaves the queue
    /// to the others before it tries one job again.
    public var workerFaultPause: Duration = .seconds(30)
    /// The bounds on each attempt's live events (`JOB_EVENT_MAX_BYTES`, `JOB_EVENTS_LIMIT`).
    public var eventLimits = JobEventStream.Limits()
    /// After shutdown stops the jobs still running, how long to wait for their handlers to end
    /// (a command gets SIGTERM, then SIGKILL after its grace) and their release to be written.
    public var releaseGrace: Duration

    /// The longest a store call may take before the processor gives up on it and retries: a
    /// call slower than a lease is of no use anyway. Stores bound their statements on the
    /// server to less than this (``serverStatementTimeout``), so that a call given up on cannot
    /// take effect later.
    public var storeTimeout: Duration { max(leaseDuration, .seconds(5)) }

    /// The bound a store puts on each statement on the server (PostgreSQL's `statement_timeout`,
    /// SQLite's busy timeout): half of ``storeTimeout``, leaving time for the wait for a
    /// connection and for the answer's way back.
    public var serverStatementTimeout: Duration { storeTimeout / 2 }

    /// The longest a lease renewal may take: as short as the server's bound allows
    /// (``StoreDeadline``), so that a renewal that never answers (its connection dropped without
    /// a reset) is given up with time left for another on a new connection before the leases
    /// run out. (At ``storeTimeout``, a whole lease, a hung renewal outlived every lease it held.)
    public var renewalTimeout: Duration { min(storeTimeout, serverStatementTimeout + StoreDeadline.margin * 2) }

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
