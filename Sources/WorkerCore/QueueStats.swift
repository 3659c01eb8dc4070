/// Counts of jobs by state, as the queue monitor and `worker stats` report them.
public struct QueueStats: Sendable, Hashable, Codable {
    public var pending: Int
    public var processing: Int
    public var completed: Int
    public var failed: Int
    public var cancelled: Int
    /// Seconds since the oldest due pending job became runnable; `nil` when none is due. Turns
    /// that wait for their session are not counted here (see ``sessions``): they wait by design.
    public var oldestPendingAgeSeconds: Double?
    /// The recent window the next three figures cover, when one was asked for.
    public var window: Duration?
    /// Jobs completed within the window.
    public var completedInWindow: Int = 0
    /// Mean and 95th percentile of run time (start to completion) of jobs completed within the window.
    public var meanDurationSeconds: Double?
    public var p95DurationSeconds: Double?

    /// The counts of each queue (the totals above sum them).
    public var queues: [String: QueueCounts] = [:]
    /// Sessions running and waiting turns.
    public var sessions = SessionStats()

    /// Completed jobs per second over the window.
    public var completedPerSecond: Double? {
        guard let window, window > .zero else { return nil }
        return Double(completedInWindow) / window.inSeconds
    }

    public init(
        pending: Int = 0,
        processing: Int = 0,
        completed: Int = 0,
        failed: Int = 0,
        cancelled: Int = 0,
        oldestPendingAgeSeconds: Double? = nil
    ) {
        self.pending = pending
        self.processing = processing
        self.completed = completed
        self.failed = failed
        self.cancelled = cancelled
        self.oldestPendingAgeSeconds = oldestPendingAgeSeconds
    }

    /// Completed jobs as a percentage of finished ones (completed + failed), rounded to
    /// two decimals; `nil` before any job has finished.
    public var successRate: Double? {
        let finished = completed + failed
        guard finished > 0 else { return nil }
        return (Double(completed) * 10_000 / Double(finished)).rounded() / 100
    }

    /// All jobs in the table.
    public var total: Int { pending + processing + completed + failed + cancelled }
}

/// Counts of one queue's jobs by state.
public struct QueueCounts: Sendable, Hashable, Codable {
    public var pending = 0
    public var processing = 0
    public var completed = 0
    public var failed = 0
    public var cancelled = 0
    /// Seconds since this queue's oldest due pending job became runnable.
    public var oldestPendingAgeSeconds: Double?

    public init(pending: Int = 0, processing: Int = 0, completed: Int = 0, failed: Int = 0, cancelled: Int = 0, oldestPendingAgeSeconds: Double? = nil) {
        self.pending = pending
        self.processing = processing
        self.completed = completed
        self.failed = failed
        self.cancelled = cancelled
        self.oldestPendingAgeSeconds = oldestPendingAgeSeconds
    }

    /// Sets the count of `status`.
    public mutating func set(_ status: JobStatus, _ count: Int) {
        switch status {
        case .pending: pending = count
        case .processing: processing = count
        case .completed: completed = count
        case .failed: failed = count
        case .cancelled: cancelled = count
        }
    }
}

extension QueueStats {
    /// Takes the table-wide counts from `totals`.
    public mutating func setTotals(_ totals: QueueCounts) {
        pending = totals.pending
        processing = totals.processing
        completed = totals.completed
        failed = totals.failed
        cancelled = totals.cancelled
        oldestPendingAgeSeconds = totals.oldestPendingAgeSeconds
    }

    /// Sets the per-queue counts and the totals that sum them (the oldest age is the oldest of all).
    public mutating func setQueues(_ queues: [String: QueueCounts]) {
        self.queues = queues
        var totals = QueueCounts()
        for counts in queues.values {
            totals.pending += counts.pending
            totals.processing += counts.processing
            totals.completed += counts.completed
            totals.failed += counts.failed
            totals.cancelled += counts.cancelled
            if let age = counts.oldestPendingAgeSeconds { totals.oldestPendingAgeSeconds = max(totals.oldestPendingAgeSeconds ?? 0, age) }
        }
        setTotals(totals)
    }
}
