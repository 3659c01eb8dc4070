/// Which jobs ``JobStore/jobs(matching:)`` lists, newest first.
public struct JobFilter: Sendable, Hashable {
    public var status: JobStatus?
    public var queue: String?
    public var limit: Int
    /// Read only what a listing shows: `payload` comes back as `{}`, `result` and `lastError`
    /// as `nil`, and the prompt cut at ``summaryPromptLength`` characters, so that listing jobs
    /// whose results or prompts are megabytes reads kilobytes.
    public var summary: Bool

    /// How much of the prompt a summary reads.
    public static let summaryPromptLength = 200

    public init(status: JobStatus? = nil, queue: String? = nil, limit: Int = 50, summary: Bool = false) {
        self.status = status
        self.queue = queue
        self.limit = limit
        self.summary = summary
    }
}
