extension Job {
    /// Cancelled while it ran, and its worker still stopping the command: it keeps its lease
    /// until the command has stopped and its `cancelled` event is stored (or the rescue clears it).
    public var isBeingStopped: Bool { status == .cancelled && leaseExpiresAt != nil }
}

extension JobStore {
    /// Whether the events of `job` after `sequence` are all there will ever be, and there are
    /// none: the job has ended (a job cancelled while running, once its worker has stopped the
    /// command) and its last event is at most `sequence`.
    ///
    /// An event stream asked from there has nothing to send: it answers 204 No Content, the one
    /// answer after which a browser's EventSource stops reconnecting (a stream that closed at
    /// once was asked again every second, for good).
    public func eventsEnded(for job: Job, after sequence: Int64) async throws -> Bool {
        guard job.status.isFinal, !job.isBeingStopped else { return false }
        return try await events(jobID: job.id, after: sequence, limit: 1).isEmpty
    }
}
