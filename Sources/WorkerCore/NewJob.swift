import Foundation

/// What a producer supplies to enqueue a job; the store fills in the rest.
public struct NewJob: Sendable, Hashable {
    /// The queue used when none is given.
    public static let defaultQueue = "default"
    /// The attempt limit used when none is given and none is configured.
    public static let defaultMaxAttempts = 3

    public var prompt: String
    public var queue: String
    public var sessionID: UUID?
    /// JSON text of an object.
    public var payload: String
    public var priority: Int
    /// `nil` means now (the store's clock).
    public var runAt: Date?
    public var maxAttempts: Int
    /// The user the job is for (``Job/userID``), `nil` for a system job.
    public var userID: UUID?

    public init(
        prompt: String,
        queue: String = NewJob.defaultQueue,
        sessionID: UUID? = nil,
        payload: String = "{}",
        priority: Int = 0,
        runAt: Date? = nil,
        maxAttempts: Int = NewJob.defaultMaxAttempts,
        userID: UUID? = nil
    ) {
        self.prompt = prompt
        self.queue = queue
        self.sessionID = sessionID
        self.payload = payload
        self.priority = priority
        self.runAt = runAt
        self.maxAttempts = maxAttempts
        self.userID = userID
    }
}
