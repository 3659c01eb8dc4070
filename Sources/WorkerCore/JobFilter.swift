/// Which jobs ``JobStore/jobs(matching:)`` lists, newest first.
public struct JobFilter: Sendable, Hashable {
    public var status: JobStatus?
    public var queue: String?
    public var limit: Int

    public init(status: JobStatus? = nil, queue: String? = nil, limit: Int = 50) {
        self.status = status
        self.queue = queue
        self.limit = limit
    }
}
