import Foundation
import Logging
import PostgresNIO
import WorkerCore

/// What the CLI and the monitor ask of the store: reading jobs, operator actions, statistics, retention.
extension PostgresJobStore {
    public func job(id: UUID) async throws -> Job? {
        try await translatingErrors {
            let rows = try await query(
                "job",
                "SELECT \(unescaped: PostgresSchema.columns) FROM \(unescaped: table) WHERE id = \(id)"
            )
            return try rows.first.map(Self.decode)
        }
    }

    public func jobs(matching filter: JobFilter) async throws -> [Job] {
        try await translatingErrors {
            let rows = try await query(
                "jobs list",
                """
                SELECT \(unescaped: filter.summary ? PostgresSchema.summaryColumns : PostgresSchema.columns) FROM \(unescaped: table)
                WHERE (\(filter.status?.rawValue)::text IS NULL OR status = \(filter.status?.rawValue))
                  AND (\(filter.queue)::text IS NULL OR queue = \(filter.queue))
                  AND (\(filter.session)::uuid IS NULL OR session_id = \(filter.session))
                  AND (\(filter.user)::uuid IS NULL OR user_id = \(filter.user))
                  AND (\(filter.promptContains)::text IS NULL OR strpos(lower(prompt), lower(\(filter.promptContains))) > 0)
                  AND (\(filter.before)::uuid IS NULL OR id < \(filter.before))
                ORDER BY \(unescaped: filter.orderClause)
                LIMIT \(max(0, filter.limit))
                """
            )
            return rows.jobsSkippingUnreadable(logger: logger, Self.decode)
        }
    }

    public func sessionsWithUnfinishedTurns(among sessions: [UUID]) async throws -> Set<UUID> {
        try await translatingErrors {
            guard !sessions.isEmpty else { return [] }
            let rows = try await query(
                "sessions with unfinished turns",
                """
                SELECT DISTINCT session_id FROM \(unescaped: table)
                WHERE session_id = ANY(\(sessions)::uuid[]) AND (status IN ('pending', 'processing') OR \(unescaped: PostgresSchema.activeTurn(nil)))
                """
            )
            return Set(try rows.map { try $0.decode(UUID.self) })
        }
    }

    public func cancel(id: UUID) async throws -> Job {
        try await translatingErrors {
            let rows = try await Self.retryingDeadlocks { try await query(
                "cancel",
                """
                WITH changed AS (
                    -- A running job keeps its lease until the worker has stopped its command, so
                    -- that neither a retry nor the session's next turn can start beside it; a
                    -- failed turn that holds its session (SESSION_ON_FAILURE=block) may be
                    -- cancelled to let the session go on.
                    UPDATE \(unescaped: table) SET \(unescaped: PostgresSchema.cancelAssignments)
                    WHERE id = \(id) AND \(unescaped: PostgresSchema.cancellable)
                    RETURNING \(unescaped: PostgresSchema.columns)
                )
                SELECT changed.*, pg_notify(\(schema.channel), 'cancel:' || changed.id::text) FROM changed
                """
            ) }
            return try await transitioned(rows, id: id, action: "cancel")
        }
    }

    public func retry(id: UUID) async throws -> Job {
        try await translatingErrors {
            let rows = try await Self.retryingDeadlocks { try await query(
                "retry",
                """
                WITH changed AS (
                    UPDATE \(unescaped: table) SET \(unescaped: PostgresSchema.retryAssignments)
                    -- Not a cancelled turn whose command is still being stopped (it holds its session).
                    WHERE id = \(id) AND status IN ('failed', 'cancelled', 'completed') AND NOT (status = 'cancelled' AND lease_expires_at IS NOT NULL)
                    RETURNING \(unescaped: PostgresSchema.columns)
                )
                SELECT changed.*, pg_notify(\(schema.channel), 'jobs') FROM changed
                """
            ) }
            return try await transitioned(rows, id: id, action: "retry")
        }
    }

    private func transitioned(_ rows: [PostgresRow], id: UUID, action: String) async throws -> Job {
        if let row = rows.first { return try Self.decode(row) }
        guard let current = try await job(id: id) else { throw JobStoreError.jobNotFound(id) }
        throw JobStoreError.invalidTransition(id: id, from: current.status, action: action)
    }

    public func stats(window: Duration?) async throws -> QueueStats {
        try await translatingErrors {
            // Counts: one pass, grouped by queue and status in a hash table (the totals are their
            // sums). Not GROUPING SETS with the window's percentile in the same pass: an
            // ordered-set aggregate rules out hashing, and sorting every row by queue took 1.7 s
            // on a million jobs, against 0.45 s here (the dashboard's overview, `worker stats`).
            let rows = try await query(
                "statistics",
                """
                SELECT queue, status, count(*),
                    extract(epoch FROM now() - min(run_at) FILTER (WHERE status = 'pending' AND NOT held_by_session AND run_at <= now()))::double precision
                FROM \(unescaped: table)
                GROUP BY queue, status
                """
            )
            var queues: [String: QueueCounts] = [:]
            for row in rows {
                let (queue, status, count, oldest) = try row.decode((String, String, Int, Double?).self)
                guard let status = JobStatus(rawValue: status) else { continue }
                queues[queue, default: QueueCounts()].set(status, count)
                if status == .pending, let oldest { queues[queue]?.oldestPendingAgeSeconds = max(0, oldest) }
            }
            var stats = QueueStats()
            stats.setQueues(queues)
            if let window {
                // The window's figures from the jobs completed within it only (the finished-jobs index).
                let recent = try await query(
                    "statistics window",
                    """
                    SELECT count(*), avg(seconds), percentile_cont(0.95) WITHIN GROUP (ORDER BY seconds)
                    FROM (
                        SELECT extract(epoch FROM completed_at - started_at)::double precision AS seconds FROM \(unescaped: table)
                        WHERE status = 'completed' AND completed_at >= now() - \(window.inMilliseconds) * interval '1 millisecond'
                            AND started_at IS NOT NULL
                    ) AS recent
                    """
                )
                stats.window = window
                if let row = recent.first {
                    let (count, mean, p95) = try row.decode((Int, Double?, Double?).self)
                    stats.completedInWindow = count
                    stats.meanDurationSeconds = mean
                    stats.p95DurationSeconds = p95
                }
            }
            stats.sessions = try await sessionStats()
            return stats
        }
    }

    /// Sessions running and waiting: reads only the sessions' active and waiting turns (through
    /// the session indexes), never the finished ones.
    private func sessionStats() async throws -> SessionStats {
        let rows = try await query(
            "session statistics",
            """
            SELECT
                count(DISTINCT session_id) FILTER (WHERE status = 'processing'),
                count(DISTINCT session_id) FILTER (WHERE status = 'pending' AND held_by_session),
                count(*) FILTER (WHERE status = 'pending' AND held_by_session),
                count(DISTINCT session_id) FILTER (WHERE status = 'failed' AND blocks_session),
                extract(epoch FROM now() - min(run_at) FILTER (WHERE status = 'pending' AND held_by_session AND run_at <= now()))::double precision
            FROM \(unescaped: table)
            WHERE session_id IS NOT NULL AND (\(unescaped: PostgresSchema.activeTurn(nil)) OR (status = 'pending' AND held_by_session))
            """
        )
        guard let row = rows.first else { return SessionStats() }
        let (running, waiting, waitingTurns, blocked, oldest) = try row.decode((Int, Int, Int, Int, Double?).self)
        return SessionStats(running: running, waiting: waiting, waitingTurns: waitingTurns, blocked: blocked, oldestWaitSeconds: oldest.map { max(0, $0) })
    }

    public func runningJobsByWorker() async throws -> [String: Int] {
        try await translatingErrors {
            // Running jobs only, through the partial lease index.
            let rows = try await query(
                "running jobs by worker",
                "SELECT coalesce(locked_by, ''), count(*) FROM \(unescaped: table) WHERE status = 'processing' GROUP BY 1"
            )
            var counts: [String: Int] = [:]
            for row in rows {
                let (worker, count) = try row.decode((String, Int).self)
                counts[worker] = count
            }
            return counts
        }
    }

    public func finishedTimeline(window: Duration, interval: Duration) async throws -> [FinishedInterval] {
        try await translatingErrors {
            let seconds = max(0.001, interval.inSeconds)
            let rows = try await query(
                "finished timeline",
                """
                SELECT floor(extract(epoch FROM completed_at) / \(seconds)) * \(seconds) AS start,
                    count(*) FILTER (WHERE status = 'completed'), count(*) FILTER (WHERE status = 'failed')
                FROM \(unescaped: table)
                WHERE status IN ('completed', 'failed') AND completed_at >= now() - \(window.inMilliseconds) * interval '1 millisecond'
                GROUP BY 1 ORDER BY 1
                """
            )
            return try rows.map { row in
                let (start, completed, failed) = try row.decode((Double, Int, Int).self)
                return FinishedInterval(start: Date(timeIntervalSince1970: start), completed: completed, failed: failed)
            }
        }
    }

    public func deleteFinished(status: JobStatus, olderThan: Duration, limit: Int) async throws -> Int? {
        try await translatingErrors {
            // One statement (its own transaction, the advisory lock held until it commits) through
            // ``query(_:_:)``: retention stops with a cancel at shutdown, which closes a
            // connection that never answers. Before, the sweep waited on it for good, and the
            // worker's shutdown with it; as a transaction of two statements, a cancelled sweep
            // did not always end at once either (seen in tests; the cause not found).
            //
            // One worker at a time (`held`): the others skip this round. The conditions stand on
            // the DELETE itself as well: a row changed after the statement's snapshot (a retry,
            // then a claim) is checked again on its new version by the DELETE's own WHERE only,
            // and a subquery's alone let a job retried (even running again) meanwhile be deleted.
            // Rows another transaction holds are skipped.
            let rows = try await query(
                "retention",
                """
                WITH lock AS (
                    SELECT pg_try_advisory_xact_lock(hashtext(\("mobvibe-worker:retention:" + schema.table))) AS held
                ), deleted AS (
                    -- The batch is picked once (ARRAY(...): one InitPlan), then deleted by id. As
                    -- `id IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)` PostgreSQL planned a
                    -- semi-join that ran the subquery again for each row, each run skipping the
                    -- rows deleted so far: every old job went in one statement, whatever the
                    -- limit, and with their events it outlasted the statement bound at every
                    -- round, so nothing was ever deleted again.
                    DELETE FROM \(unescaped: table) WHERE (SELECT held FROM lock) AND id = ANY(ARRAY(
                        SELECT id FROM \(unescaped: table)
                        WHERE status = \(status.rawValue) AND completed_at < now() - \(olderThan.inMilliseconds) * interval '1 millisecond'
                        LIMIT \(limit)
                        FOR UPDATE SKIP LOCKED
                    )) AND status = \(status.rawValue) AND completed_at < now() - \(olderThan.inMilliseconds) * interval '1 millisecond'
                    RETURNING id
                )
                SELECT (SELECT held FROM lock), (SELECT count(*) FROM deleted)::int
                """
            )
            let (held, deleted) = try (rows.first?.decode((Bool, Int).self)) ?? (false, 0)
            return held ? deleted : nil
        }
    }
}
