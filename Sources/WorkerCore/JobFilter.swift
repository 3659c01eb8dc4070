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
    /// Only jobs whose prompt contains this text (ignoring case, ASCII letters at least).
    public var promptContains: String?
    /// A page of a newest-first listing: only jobs whose id sorts before this one. Ids are
    /// time-ordered (UUIDv7), so this walks back in time by the primary key (keyset
    /// pagination: every page costs the same, however deep); the listing is then ordered by id.
    public var before: UUID?
    /// Newest first by id (time-ordered) rather than by `created_at`: the order in which
    /// ``before`` pages, and one the primary key serves without a sort.
    public var orderedByID: Bool

    /// How much of the prompt a summary reads.
    public static let summaryPromptLength = 200

    public init(
        status: JobStatus? = nil, queue: String? = nil, session: UUID? = nil, user: UUID? = nil, limit: Int = 50, summary: Bool = false,
        promptContains: String? = nil, before: UUID? = nil, orderedByID: Bool = false
    ) {
        self.status = status
        self.queue = queue
        self.session = session
        self.user = user
        self.limit = limit
        self.summary = summary
        self.promptContains = promptContains
        self.before = before
        self.orderedByID = orderedByID || before != nil
    }

    /// The listing's order: newest first by id when asked (also within a session); otherwise a
    /// session's turns oldest first, and other listings newest first by `created_at`.
    public var orderClause: String {
        orderedByID ? "id DESC" : session != nil ? "created_at, id" : "created_at DESC, id DESC"
    }
}
