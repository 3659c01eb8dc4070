import Foundation

/// A row of the jobs table, as every driver returns it.
///
/// `payload` and `result` are kept as JSON text so that the claim path never decodes
/// or re-encodes them; a handler parses what it needs.
public struct Job: Sendable, Hashable, Identifiable {
    public var id: UUID
    /// The queue the job waits in; workers claim only from the queues they serve.
    public var queue: String
    public var sessionID: UUID?
    public var prompt: String
    /// JSON text of an object.
    public var payload: String
    public var status: JobStatus
    /// Higher runs first.
    public var priority: Int
    /// The job is not claimed before this moment.
    public var runAt: Date
    /// Attempts started; an attempt released at shutdown is not counted.
    public var attempts: Int
    public var maxAttempts: Int
    public var lastError: String?
    /// JSON text the handler produced.
    public var result: String?
    public var createdAt: Date
    public var startedAt: Date?
    public var completedAt: Date?
    /// The worker holding the lease while the job is `processing`.
    public var lockedBy: String?
    public var leaseExpiresAt: Date?
    /// A pending turn that waits for an earlier turn of its session to finish.
    public var heldBySession: Bool
    /// A turn that failed for good and holds its session until it is retried or cancelled
    /// (``SessionFailurePolicy/block``).
    public var blocksSession: Bool
    /// Tokens and cost the agent reported, over all attempts.
    public var usage: JobUsage
    /// The user who asked for the job (a Supabase user's id), `nil` for a system job. Row-level
    /// security shows a user only their own jobs (docs/WORKER_SERVICE.md, "Supabase").
    public var userID: UUID?

    public init(
        id: UUID,
        queue: String = NewJob.defaultQueue,
        sessionID: UUID? = nil,
        prompt: String,
        payload: String = "{}",
        status: JobStatus = .pending,
        priority: Int = 0,
        runAt: Date,
        attempts: Int = 0,
        maxAttempts: Int = NewJob.defaultMaxAttempts,
        lastError: String? = nil,
        result: String? = nil,
        createdAt: Date,
        startedAt: Date? = nil,
        completedAt: Date? = nil,
        lockedBy: String? = nil,
        leaseExpiresAt: Date? = nil,
        heldBySession: Bool = false,
        blocksSession: Bool = false,
        usage: JobUsage = .zero,
        userID: UUID? = nil
    ) {
        self.id = id
        self.queue = queue
        self.sessionID = sessionID
        self.prompt = prompt
        self.payload = payload
        self.status = status
        self.priority = priority
        self.runAt = runAt
        self.attempts = attempts
        self.maxAttempts = maxAttempts
        self.lastError = lastError
        self.result = result
        self.createdAt = createdAt
        self.startedAt = startedAt
        self.completedAt = completedAt
        self.lockedBy = lockedBy
        self.leaseExpiresAt = leaseExpiresAt
        self.heldBySession = heldBySession
        self.blocksSession = blocksSession
        self.usage = usage
        self.userID = userID
    }
}
