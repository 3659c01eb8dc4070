import Foundation
import Logging
import PostgresNIO
import WorkerCore

/// Keeping leases: renewals, the rescue of expired ones, and the end of a cancelled turn's lease.
extension PostgresJobStore {
    /// Renews the leases whose rows it can lock now; a row another transaction holds locked (a
    /// producer's open transaction that inserted a turn of the job's session, an outcome write)
    /// is tried again a few times, briefly apart, and then left to the next renewal,
    /// reported as held: it is still this worker's. Before, one locked row held up the whole
    /// statement, every lease of the worker waited behind it, and when the statement bound cut it
    /// short none was renewed: the worker's other jobs were rescued and run again elsewhere while
    /// they still ran here.
    public func renew(_ unordered: [Lease], duration: Duration) async throws -> [UUID: LeaseState] {
        try await translatingErrors {
            guard !unordered.isEmpty else { return [:] }
            // In id order, as outcome writes lock rows (see ``record(_:)``).
            var pending = unordered.sorted { $0.jobID.precedes($1.jobID) }
            var states: [UUID: LeaseState] = [:]
            for pause in Self.renewalRetryPauses {
                let busy = try await renewOnce(pending, duration: duration, into: &states)
                if busy.isEmpty { return states }
                pending = busy
                guard let pause else { break }
                try await Task.sleep(for: pause)
            }
            // Still locked: not renewed this time, and still this worker's.
            for lease in pending { states[lease.jobID] = .held }
            return states
        }
    }

    /// How long renewal waits before trying locked rows again (`nil`: no more tries).
    static let renewalRetryPauses: [Duration?] = [.milliseconds(50), .milliseconds(150), .milliseconds(300), nil]

    /// One renewal statement: fills `states` for the leases it decided, and returns those whose
    /// rows were locked by another transaction (still this worker's when the statement read them).
    private func renewOnce(_ leases: [Lease], duration: Duration, into states: inout [UUID: LeaseState]) async throws -> [Lease] {
        let rows = try await bounded("lease renewal", on: leaseClient) { connection in try await connection.query(
            """
            WITH input AS (
                SELECT * FROM unnest(\(leases.map(\.jobID))::uuid[], \(leases.map(\.workerID))::text[], \(leases.map(\.attempt))::int[])
                    AS t(id, worker, attempt)
            ), lockable AS (
                SELECT j.id FROM \(unescaped: table) AS j JOIN input ON j.id = input.id
                WHERE j.locked_by = input.worker AND j.attempts = input.attempt
                    -- A cancelled turn keeps its session until its command has stopped
                    -- (``releaseCancelled(_:)``): its lease is kept alive meanwhile.
                    AND (j.status = 'processing' OR (j.status = 'cancelled' AND j.lease_expires_at IS NOT NULL))
                ORDER BY j.id
                -- NO KEY UPDATE, what the update takes anyway: it still skips a producer's
                -- session admission and an outcome write, but not the key-share lock every batch
                -- of this worker's own events holds on its jobs (and the events' foreign key
                -- takes). With FOR UPDATE, a job printing without pause was skipped at every
                -- try, and its lease ran out while it ran.
                FOR NO KEY UPDATE OF j SKIP LOCKED
            ), renewed AS (
                UPDATE \(unescaped: table) AS j SET lease_expires_at = now() + \(duration.inMilliseconds) * interval '1 millisecond'
                FROM lockable
                WHERE j.id = lockable.id
                RETURNING j.id
            )
            -- `current` is the row as the statement found it (before its own update).
            SELECT input.id, renewed.id IS NOT NULL, coalesce(current.status, ''),
                current.locked_by IS NOT DISTINCT FROM input.worker AND current.attempts = input.attempt
                    AND (current.status = 'processing' OR (current.status = 'cancelled' AND current.lease_expires_at IS NOT NULL))
            FROM input
            LEFT JOIN renewed ON renewed.id = input.id
            LEFT JOIN \(unescaped: table) AS current ON current.id = input.id
            """,
            logger: logger
        ).collect() }
        let byID = Dictionary(leases.map { ($0.jobID, $0) }, uniquingKeysWith: { first, _ in first })
        var busy: [Lease] = []
        for row in rows {
            let (id, renewed, status, stillOurs) = try row.decode((UUID, Bool, String, Bool).self)
            if !renewed, stillOurs, let lease = byID[id] {
                busy.append(lease)
            } else {
                states[id] = renewed && status == JobStatus.processing.rawValue
                    ? .held : (status == JobStatus.cancelled.rawValue ? .cancelled : .lost)
            }
        }
        return busy
    }

    public func rescueExpiredLeases(sparing running: [UUID]) async throws -> [RescuedJob] {
        try await translatingErrors {
            let rows = try await bounded("rescue") { connection in try await connection.query(
                """
                UPDATE \(unescaped: table) AS j SET
                    status = CASE WHEN e.attempts >= e.max_attempts THEN 'failed' ELSE 'pending' END,
                    last_error = 'lease expired: worker ' || coalesce(e.locked_by, 'unknown') || ' stopped renewing it during attempt ' || e.attempts,
                    completed_at = CASE WHEN e.attempts >= e.max_attempts THEN now() ELSE NULL END,
                    blocks_session = (e.attempts >= e.max_attempts AND j.session_id IS NOT NULL AND \(sessionOnFailure == .block)),
                    locked_by = NULL, lease_expires_at = NULL
                FROM (
                    SELECT id, locked_by, attempts, max_attempts FROM \(unescaped: table)
                    WHERE status = 'processing' AND (lease_expires_at < now() OR lease_expires_at IS NULL)
                        AND NOT (id = ANY(\(running)::uuid[]))
                    FOR UPDATE SKIP LOCKED
                ) AS e
                WHERE j.id = e.id
                RETURNING j.id, j.queue, j.session_id, e.locked_by, e.attempts, j.status
                """,
                logger: logger
            ).collect() }
            // Cancelled jobs whose worker stopped renewing before it said the command had
            // stopped (``releaseCancelled(_:)``): they may be retried, their sessions move on.
            let released = try await bounded("rescue") { connection in try await connection.query(
                """
                UPDATE \(unescaped: table) SET locked_by = NULL, lease_expires_at = NULL
                WHERE status = 'cancelled' AND lease_expires_at IS NOT NULL
                    AND lease_expires_at < now() AND NOT (id = ANY(\(running)::uuid[]))
                RETURNING id
                """,
                logger: logger
            ).collect() }
            var rescued: [RescuedJob] = []
            for row in rows {
                let (id, queue, session, worker, attempt, status) = try row.decode((UUID, String, UUID?, String?, Int, String).self)
                rescued.append(RescuedJob(id: id, queue: queue, sessionID: session, previousWorker: worker, attempt: attempt, newStatus: JobStatus(rawValue: status) ?? .pending))
            }
            if !released.isEmpty || rescued.contains(where: { $0.newStatus == .pending || $0.sessionID != nil }) {
                try? await notify("jobs")
            }
            return rescued
        }
    }

    public func releaseCancelled(_ leases: [Lease]) async throws {
        try await translatingErrors {
            guard !leases.isEmpty else { return }
            let rows = try await bounded("cancellation release") { connection in try await connection.query(
                """
                UPDATE \(unescaped: table) AS j SET locked_by = NULL, lease_expires_at = NULL
                FROM unnest(\(leases.map(\.jobID))::uuid[], \(leases.map(\.workerID))::text[], \(leases.map(\.attempt))::int[])
                    AS v(id, worker, attempt)
                WHERE j.id = v.id AND j.status = 'cancelled' AND j.locked_by = v.worker AND j.attempts = v.attempt
                    AND j.lease_expires_at IS NOT NULL
                RETURNING j.id
                """,
                logger: logger
            ).collect() }
            // The sessions' next turns were let through: wake the workers.
            if !rows.isEmpty { try? await notify("jobs") }
        }
    }
}
