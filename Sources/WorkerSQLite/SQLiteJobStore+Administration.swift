import Foundation
import Logging
import SQLiteNIO
import WorkerCore

/// What the CLI and the monitor ask of the store: reading jobs, operator actions, statistics, retention.
extension SQLiteJobStore {
    public func job(id: UUID) async throws -> Job? {
        let rows = try await readLock.withLock {
            try await reader.query(
                "SELECT \(SQLiteSchema.columns) FROM \"\(table)\" WHERE id = ?1",
                [.text(id.lowercasedText)]
            )
        }
        return try rows.first.map(Self.decode)
    }

    public func jobs(matching filter: JobFilter) async throws -> [Job] {
        let rows = try await readLock.withLock {
            try await reader.query(
                """
                SELECT \(filter.summary ? SQLiteSchema.summaryColumns : SQLiteSchema.columns) FROM "\(table)"
                WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR queue = ?2) AND (?4 IS NULL OR session_id = ?4)
                  AND (?5 IS NULL OR user_id = ?5)
                  AND (?6 IS NULL OR instr(lower(prompt), lower(?6)) > 0)
                  AND (?7 IS NULL OR id < ?7)
                ORDER BY \(filter.orderClause) LIMIT ?3
                """,
                [
                    filter.status.map { .text($0.rawValue) } ?? .null,
                    filter.queue.map { .text($0) } ?? .null,
                    .integer(max(0, filter.limit)),
                    filter.session.map { .text($0.lowercasedText) } ?? .null,
                    filter.user.map { .text($0.lowercasedText) } ?? .null,
                    filter.promptContains.map { .text($0) } ?? .null,
                    filter.before.map { .text($0.lowercasedText) } ?? .null,
                ]
            )
        }
        return rows.jobsSkippingUnreadable(logger: logger, Self.decode)
    }

    public func cancel(id: UUID) async throws -> Job {
        let job = try await transition(
            id: id,
            action: "cancel",
            sql: """
                UPDATE "\(table)" SET status = 'cancelled', completed_at = ?2, blocks_session = 0,
                    lease_expires_at = CASE WHEN status = 'processing' THEN lease_expires_at END
                WHERE id = ?1 AND (status IN ('pending', 'processing') OR (status = 'failed' AND blocks_session = 1))
                RETURNING \(SQLiteSchema.columns)
                """
        )
        notify(.jobCancelled(id))
        return job
    }

    public func retry(id: UUID) async throws -> Job {
        let job = try await transition(
            id: id,
            action: "retry",
            sql: """
                UPDATE "\(table)" SET status = 'pending', run_at = ?2, completed_at = NULL, locked_by = NULL,
                    lease_expires_at = NULL, max_attempts = MAX(max_attempts, attempts + 1)
                WHERE id = ?1 AND status IN ('failed', 'cancelled', 'completed') AND NOT (status = 'cancelled' AND lease_expires_at IS NOT NULL)
                RETURNING \(SQLiteSchema.columns)
                """
        )
        notify(.jobsAvailable)
        return job
    }

    /// Runs a conditional state change (`?1` the job's id, `?2` the time); explains why when no
    /// row changed. The time is read once the file's write lock is held (see
    /// ``inTransaction(_:)``): a cancel stamped before a wait for it was older than another
    /// process's watcher looks back for, and its command ran on until a renewal.
    private func transition(id: UUID, action: String, sql: String) async throws -> Job {
        let rows = try await lock.withLock {
            try await boundBusyWait(action)
            return try await inTransaction {
                try await connection.query(sql, [.text(id.lowercasedText), .integer(Self.milliseconds(Date()))])
            }
        }
        if let row = rows.first { return try Self.decode(row) }
        guard let current = try await job(id: id) else { throw JobStoreError.jobNotFound(id) }
        throw JobStoreError.invalidTransition(id: id, from: current.status, action: action)
    }

    public func runningJobsByWorker() async throws -> [String: Int] {
        let rows = try await readLock.withLock {
            try await reader.query(
                "SELECT COALESCE(locked_by, '') AS worker, COUNT(*) AS count FROM \"\(table)\" WHERE status = 'processing' GROUP BY 1")
        }
        var counts: [String: Int] = [:]
        for row in rows {
            counts[row.column("worker")?.string ?? ""] = Int(row.column("count")?.integer ?? 0)
        }
        return counts
    }

    public func stats(window: Duration?) async throws -> QueueStats {
        let now = Self.milliseconds(Date())
        let sessions = try await readLock.withLock {
            try await reader.query(
                """
                SELECT
                    COUNT(DISTINCT CASE WHEN status = 'processing' THEN session_id END) AS running,
                    COUNT(DISTINCT CASE WHEN status = 'pending' AND held_by_session = 1 THEN session_id END) AS waiting,
                    COALESCE(SUM(status = 'pending' AND held_by_session = 1), 0) AS waiting_turns,
                    COUNT(DISTINCT CASE WHEN status = 'failed' AND blocks_session = 1 THEN session_id END) AS blocked,
                    MIN(CASE WHEN status = 'pending' AND held_by_session = 1 AND run_at <= ?1 THEN run_at END) AS oldest_wait
                FROM "\(table)"
                WHERE session_id IS NOT NULL AND (\(SQLiteSchema.activeTurn(nil)) OR (status = 'pending' AND held_by_session = 1))
                """,
                [.integer(now)]
            ).first
        }
        let (rows, durations) = try await readLock.withLock { () -> ([SQLiteRow], (count: Int, mean: Double?, p95: Double?)) in
            let counts = try await reader.query(
                """
                SELECT queue, status, COUNT(*) AS count,
                    MIN(CASE WHEN status = 'pending' AND held_by_session = 0 AND run_at <= ?1 THEN run_at END) AS oldest_due
                FROM "\(table)" GROUP BY queue, status
                """,
                [.integer(now)]
            )
            guard let window else { return (counts, (0, nil, nil)) }
            // Computed by SQLite, as PostgreSQL computes them: the window's durations were read
            // into the worker's memory, one row per job completed in it, and sorted there.
            let recent = "FROM \"\(table)\" WHERE status = 'completed' AND completed_at >= ?1 AND started_at IS NOT NULL"
            let since = SQLiteData.integer(now - Int(window.inMilliseconds))
            let summary = try await reader.query("SELECT COUNT(*) AS n, AVG(completed_at - started_at) AS mean \(recent)", [since]).first
            let count = Int(summary?.column("n")?.integer ?? 0)
            guard count > 0 else { return (counts, (0, nil, nil)) }
            // The 95th percentile: the duration at rank ceil(0.95 n), read from the top (SQLite
            // then keeps only the longest twentieth while it sorts).
            let rank = min(count - 1, Int((0.95 * Double(count)).rounded(.up)) - 1)
            let p95 = try await reader.query(
                "SELECT completed_at - started_at AS duration \(recent) ORDER BY duration DESC LIMIT 1 OFFSET ?2",
                [since, .integer(count - 1 - rank)]
            ).first?.column("duration")?.integer
            return (counts, (count, summary?.column("mean")?.double.map { $0 / 1000 }, p95.map { Double($0) / 1000 }))
        }
        var queues: [String: QueueCounts] = [:]
        for row in rows {
            guard let status = row.column("status")?.string.flatMap(JobStatus.init(rawValue:)) else { continue }
            let queue = row.column("queue")?.string ?? ""
            queues[queue, default: QueueCounts()].set(status, Int(row.column("count")?.integer ?? 0))
            if status == .pending, let oldest = row.column("oldest_due")?.integer {
                queues[queue]?.oldestPendingAgeSeconds = max(0, Double(now - oldest) / 1000)
            }
        }
        var stats = QueueStats()
        stats.setQueues(queues)
        if let sessions {
            stats.sessions = SessionStats(
                running: Int(sessions.column("running")?.integer ?? 0),
                waiting: Int(sessions.column("waiting")?.integer ?? 0),
                waitingTurns: Int(sessions.column("waiting_turns")?.integer ?? 0),
                blocked: Int(sessions.column("blocked")?.integer ?? 0),
                oldestWaitSeconds: sessions.column("oldest_wait")?.integer.map { max(0, Double(now - $0) / 1000) }
            )
        }
        if let window {
            stats.window = window
            stats.completedInWindow = durations.count
            stats.meanDurationSeconds = durations.mean
            stats.p95DurationSeconds = durations.p95
        }
        return stats
    }

    public func sessionsWithUnfinishedTurns(among sessions: [UUID]) async throws -> Set<UUID> {
        guard !sessions.isEmpty else { return [] }
        let list = sessions.map { $0.lowercasedText }
        let rows = try await readLock.withLock {
            try await reader.query(
                """
                SELECT DISTINCT session_id FROM "\(table)"
                WHERE session_id IN (SELECT value FROM json_each(?1))
                    AND (status IN ('pending', 'processing') OR \(SQLiteSchema.activeTurn(nil)))
                """,
                [.text(String(decoding: try JSONEncoder().encode(list), as: UTF8.self))]
            )
        }
        return Set(rows.compactMap { $0.column("session_id")?.string.flatMap(UUID.init(uuidString:)) })
    }

    public func finishedTimeline(window: Duration, interval: Duration) async throws -> [FinishedInterval] {
        let since = Self.milliseconds(Date()) - Int(window.inMilliseconds)
        let length = max(1, Int(interval.inMilliseconds))
        let rows = try await readLock.withLock {
            try await reader.query(
                """
                SELECT completed_at / ?2 * ?2 AS start, sum(status = 'completed') AS completed, sum(status = 'failed') AS failed
                FROM "\(table)" WHERE status IN ('completed', 'failed') AND completed_at >= ?1
                GROUP BY 1 ORDER BY 1
                """,
                [.integer(since), .integer(length)]
            )
        }
        return rows.map { row in
            FinishedInterval(
                start: Date(timeIntervalSince1970: Double(row.column("start")?.integer ?? 0) / 1_000),
                completed: row.column("completed")?.integer ?? 0, failed: row.column("failed")?.integer ?? 0)
        }
    }

    /// Deletes the jobs in groups, each group in one statement that takes their events with them
    /// (the delete trigger), so a job and its events go together or not at all; a group holds
    /// about ``retentionEventsPerStatement`` events at most (a job with more goes alone).
    ///
    /// One statement deleting a thousand jobs with their events (millions of rows at
    /// `JOB_EVENTS_LIMIT`) held the file's write lock for seconds, and every process's renewals
    /// and outcome writes on the file waited behind it. The events then went first, in statements
    /// of their own, and a job retried between those (`worker jobs retry`) was kept with part of
    /// its events gone: its next attempt numbered on from what was left, or from 1.
    public func deleteFinished(status: JobStatus, olderThan: Duration, limit: Int) async throws -> Int? {
        let cutoff = Self.milliseconds(Date()) - Int(olderThan.inMilliseconds)
        let events = JobEvent.tableName(forJobsTable: table)
        // Each candidate with its last event's number: as many events at most (one probe of
        // the events' key, where counting read them all).
        let candidates = try await readLock.withLock {
            try await reader.query(
                """
                SELECT j.id AS id, (SELECT COALESCE(MAX(e.seq), 0) FROM "\(events)" AS e WHERE e.job_id = j.id) AS events
                FROM "\(table)" AS j WHERE j.status = ?1 AND j.completed_at < ?2 LIMIT ?3
                """,
                [.text(status.rawValue), .integer(cutoff), .integer(limit)]
            )
        }
        var groups: [[String]] = []
        var group: [String] = []
        var groupEvents = 0
        for row in candidates {
            guard let id = row.column("id")?.string else { continue }
            let count = Int(row.column("events")?.integer ?? 0)
            if !group.isEmpty, groupEvents + count > Self.retentionEventsPerStatement {
                groups.append(group)
                (group, groupEvents) = ([], 0)
            }
            group.append(id)
            groupEvents += count
        }
        if !group.isEmpty { groups.append(group) }
        var deleted = 0
        for group in groups where !Task.isCancelled {
            let ids = String(decoding: try JSONEncoder().encode(group), as: UTF8.self)
            deleted += try await lock.withLock {
                try await boundBusyWait("retention")
                // Only jobs still to delete: one retried since the candidates were read stays,
                // with all its events.
                return try await connection.query(
                    """
                    DELETE FROM "\(table)" WHERE id IN (SELECT value FROM json_each(?1)) AND status = ?2 AND completed_at < ?3
                    RETURNING id
                    """,
                    [.text(ids), .text(status.rawValue), .integer(cutoff)]
                ).count
            }
        }
        return deleted
    }

    /// The most events one retention statement deletes, but for a job that has more (a few
    /// milliseconds of the write lock).
    static let retentionEventsPerStatement = 5_000
}
