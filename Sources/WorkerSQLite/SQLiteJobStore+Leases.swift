import Foundation
import Logging
import SQLiteNIO
import WorkerCore

/// Keeping leases: renewals, the rescue of expired ones, and the end of a cancelled turn's lease.
extension SQLiteJobStore {
    public func renew(_ leases: [Lease], duration: Duration) async throws -> [UUID: LeaseState] {
        guard !leases.isEmpty else { return [:] }
        return try await lock.withLock {
            try await boundBusyWait("lease renewal")
            // One transaction: one wait for the file's write lock and one commit for all of
            // them. (A statement each waited for the lock again, each up to the whole bound, and
            // the renewals of a long list overran their caller's deadline.)
            return try await inTransaction {
                // Counted from the write lock, not from before the waits for it (see
                // ``inTransaction(_:)``): a renewal that waited behind a long write still gives
                // its whole duration.
                let expires = Self.milliseconds(Date()) + Int(duration.inMilliseconds)
                var states: [UUID: LeaseState] = [:]
                for lease in leases {
                    let rows = try await connection.query(
                        """
                        UPDATE "\(table)" SET lease_expires_at = ?1
                        WHERE id = ?2 AND locked_by = ?3 AND attempts = ?4
                            -- A cancelled turn keeps its session until its command has stopped
                            -- (releaseCancelled): its lease is kept alive meanwhile.
                            AND (status = 'processing' OR (status = 'cancelled' AND lease_expires_at IS NOT NULL))
                        RETURNING status
                        """,
                        [.integer(expires), .text(lease.jobID.lowercasedText), .text(lease.workerID), .integer(lease.attempt)]
                    )
                    if let status = rows.first?.column("status")?.string {
                        states[lease.jobID] = status == JobStatus.processing.rawValue ? .held : .cancelled
                        continue
                    }
                    let status = try await connection.query(
                        "SELECT status FROM \"\(table)\" WHERE id = ?1",
                        [.text(lease.jobID.lowercasedText)]
                    ).first?.column("status")?.string
                    states[lease.jobID] = status == JobStatus.cancelled.rawValue ? .cancelled : .lost
                }
                return states
            }
        }
    }

    public func rescueExpiredLeases(sparing running: [UUID]) async throws -> [RescuedJob] {
        let spared = Set(running.map { $0.lowercasedText })
        return try await lock.withLock {
            try await boundBusyWait("rescue")
            let rescued = try await inTransaction {
                // The time once the file's write lock is held (see ``inTransaction(_:)``).
                let now = Self.milliseconds(Date())
                let expired = try await connection.query(
                    """
                    SELECT id, queue, session_id, locked_by, attempts, max_attempts FROM "\(table)"
                    WHERE status = 'processing' AND (lease_expires_at < ?1 OR lease_expires_at IS NULL)
                    """,
                    [.integer(now)]
                )
                var rescued: [RescuedJob] = []
                for row in expired {
                    guard let idText = row.column("id")?.string, !spared.contains(idText) else { continue }
                    let attempts = Int(row.column("attempts")?.integer ?? 0)
                    let maxAttempts = Int(row.column("max_attempts")?.integer ?? 1)
                    let worker = row.column("locked_by")?.string
                    let newStatus: JobStatus = attempts >= maxAttempts ? .failed : .pending
                    let error = "lease expired: worker \(worker ?? "unknown") stopped renewing it during attempt \(attempts)"
                    _ = try await connection.query(
                        """
                        UPDATE "\(table)" SET status = ?2, last_error = ?3, locked_by = NULL, lease_expires_at = NULL,
                            completed_at = CASE WHEN ?2 = 'failed' THEN ?4 ELSE NULL END,
                            blocks_session = (?2 = 'failed' AND session_id IS NOT NULL AND ?5)
                        WHERE id = ?1 AND status = 'processing' AND (lease_expires_at < ?4 OR lease_expires_at IS NULL)
                        """,
                        [.text(idText), .text(newStatus.rawValue), .text(error), .integer(now), .integer(sessionOnFailure == .block ? 1 : 0)]
                    )
                    rescued.append(RescuedJob(id: UUID(uuidString: idText) ?? UUID(), queue: row.column("queue")?.string ?? "",
                        sessionID: row.column("session_id")?.string.flatMap(UUID.init(uuidString:)), previousWorker: worker, attempt: attempts, newStatus: newStatus))
                }
                // Cancelled jobs whose worker stopped renewing before it said the command had
                // stopped (releaseCancelled): they may be retried, their sessions move on.
                let spareList = String(decoding: try JSONEncoder().encode(Array(spared)), as: UTF8.self)
                _ = try await connection.query(
                    """
                    UPDATE "\(table)" SET locked_by = NULL, lease_expires_at = NULL
                    WHERE status = 'cancelled' AND lease_expires_at IS NOT NULL AND lease_expires_at < ?1
                        AND id NOT IN (SELECT value FROM json_each(?2))
                    """,
                    [.integer(now), .text(spareList)]
                )
                return rescued
            }
            if rescued.contains(where: { $0.sessionID != nil }) { notify(.jobsAvailable) }
            return rescued
        }
    }

    public func releaseCancelled(_ leases: [Lease]) async throws {
        guard !leases.isEmpty else { return }
        try await lock.withLock {
            try await boundBusyWait("cancellation release")
            try await inTransaction {
                for lease in leases {
                    _ = try await connection.query(
                        """
                        UPDATE "\(table)" SET locked_by = NULL, lease_expires_at = NULL
                        WHERE id = ?1 AND status = 'cancelled' AND locked_by = ?2 AND attempts = ?3 AND lease_expires_at IS NOT NULL
                        """,
                        [.text(lease.jobID.lowercasedText), .text(lease.workerID), .integer(lease.attempt)]
                    )
                }
            }
        }
        notify(.jobsAvailable)
    }
}
