import Foundation
import Logging
import PostgresNIO
import WorkerCore

/// Keeping leases: renewals, the rescue of expired ones, and the end of a cancelled turn's lease.
extension PostgresJobStore {
    public func renew(_ unordered: [Lease], duration: Duration) async throws -> [UUID: LeaseState] {
        try await translatingErrors {
            guard !unordered.isEmpty else { return [:] }
            // In id order, as outcome writes lock rows (see ``record(_:)``).
            let leases = unordered.sorted { $0.jobID.precedes($1.jobID) }
            let rows = try await bounded("lease renewal", on: leaseClient) { connection in try await connection.query(
                """
                WITH input AS (
                    SELECT * FROM unnest(\(leases.map(\.jobID))::uuid[], \(leases.map(\.workerID))::text[], \(leases.map(\.attempt))::int[])
                        AS t(id, worker, attempt)
                ), renewed AS (
                    UPDATE \(unescaped: table) AS j SET lease_expires_at = now() + \(duration.inMilliseconds) * interval '1 millisecond'
                    FROM input
                    WHERE j.id = input.id AND j.locked_by = input.worker AND j.attempts = input.attempt
                        -- A cancelled turn keeps its session until its command has stopped
                        -- (``releaseCancelled(_:)``): its lease is kept alive meanwhile.
                        AND (j.status = 'processing' OR (j.status = 'cancelled' AND j.lease_expires_at IS NOT NULL))
                    RETURNING j.id
                )
                SELECT input.id, renewed.id IS NOT NULL AND current.status = 'processing', coalesce(current.status, '')
                FROM input
                LEFT JOIN renewed ON renewed.id = input.id
                LEFT JOIN \(unescaped: table) AS current ON current.id = input.id
                """,
                logger: logger
            ).collect() }
            var states: [UUID: LeaseState] = [:]
            for row in rows {
                let (id, held, status) = try row.decode((UUID, Bool, String).self)
                states[id] = held ? .held : (status == JobStatus.cancelled.rawValue ? .cancelled : .lost)
            }
            return states
        }
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
                    WHERE status = 'processing' AND lease_expires_at < now() AND NOT (id = ANY(\(running)::uuid[]))
                    FOR UPDATE SKIP LOCKED
                ) AS e
                WHERE j.id = e.id
                RETURNING j.id, j.queue, j.session_id, e.locked_by, e.attempts, j.status
                """,
                logger: logger
            ).collect() }
            // Cancelled turns whose worker stopped renewing before it said the command had
            // stopped (``releaseCancelled(_:)``): their sessions move on.
            let released = try await bounded("rescue") { connection in try await connection.query(
                """
                UPDATE \(unescaped: table) SET locked_by = NULL, lease_expires_at = NULL
                WHERE session_id IS NOT NULL AND status = 'cancelled' AND lease_expires_at IS NOT NULL
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
