import Foundation

/// Which jobs ``JobStore/jobs(matching:)`` lists: newest first, or a session's turns in the
/// order they run (oldest first) when ``session`` is set.
public struct JobFilter: Sendable, Hashable {
    public var status: JobStatus?
    public var queue: String?
    /// Only this session's turns, in turn order.
    public var session: UUID?
    /// Only this user's jobs (``Job/userID``).
    public var user: UUID?
    public var limit: Int
    /// Read only what a listing shows: `payload` comes back as `{}`, `result` and `lastError`
    /// as `nil`, and the prompt cut at ``summaryPromptLength`` characters, so that listing jobs
    /// whose results or prompts are megabytes reads kilobytes.
    public var summary: Bool

    /// How much of the prompt a summary reads.
    public static let summaryPromptLength = 200

    public init(status: JobStatus? = nil, queue: String? = nil, session: UUID? = nil, user: UUID? = nil, limit: Int = 50, summary: Bool = false) {
        self.status = status
        self.queue = queue
        self.session = session
        self.user = user
        self.limit = limit
        self.summary = summary
    }
}
