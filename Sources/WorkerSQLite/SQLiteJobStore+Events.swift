import Foundation
import SQLiteNIO
import WorkerCore

/// Job events (docs/WORKER_SERVICE.md, "Job events"): the `<table>_events` table.
extension SQLiteJobStore {
    var eventsTable: String { "\"\(JobEvent.tableName(forJobsTable: table))\"" }

    public func appendEvents(_ events: [NewJobEvent]) async throws -> Set<UUID> {
        guard !events.isEmpty else { return [] }
        let now = Self.milliseconds(Date())
        var leases: [UUID: Lease] = [:]
        for event in events { leases[event.lease.jobID] = event.lease }
        let refused: Set<UUID> = try await lock.withLock {
            try await boundBusyWait("writing job events")
            do {
                return try await inTransaction {
                    // Whose lease holds, in one statement; then the events of those jobs.
                    var held: Set<UUID> = []
                    let jobs = Array(leases.values)
                    for start in stride(from: 0, to: jobs.count, by: 300) {
                        let chunk = jobs[start..<min(start + 300, jobs.count)]
                        var conditions: [String] = []
                        var binds: [SQLiteData] = []
                        for lease in chunk {
                            conditions.append("(id = ?\(binds.count + 1) AND locked_by = ?\(binds.count + 2) AND attempts = ?\(binds.count + 3))")
                            binds += [.text(lease.jobID.lowercasedText), .text(lease.workerID), .integer(lease.attempt)]
                        }
                        let rows = try await connection.query(
                            """
                            SELECT id FROM "\(table)" WHERE status IN ('processing', 'cancelled') AND (\(conditions.joined(separator: " OR ")))
                            """,
                            binds
                        )
                        for row in rows { if let id = row.column("id")?.string.flatMap(UUID.init(uuidString:)) { held.insert(id) } }
                    }
                    let stored = events.filter { held.contains($0.lease.jobID) }
                    for start in stride(from: 0, to: stored.count, by: 500) {
                        let chunk = stored[start..<min(start + 500, stored.count)]
                        var rows: [String] = []
                        var binds: [SQLiteData] = []
                        binds.reserveCapacity(chunk.count * 6)
                        for event in chunk {
                            let base = binds.count
                            rows.append("(?\(base + 1), ?\(base + 2), ?\(base + 3), ?\(base + 4), ?\(base + 5), ?\(base + 6))")
                            binds += [
                                .text(event.lease.jobID.lowercasedText), .integer(Int(event.sequence)), .integer(event.lease.attempt),
                                .integer(now), .text(event.kind.rawValue), .text(event.data),
                            ]
                        }
                        _ = try await connection.query(
                            """
                            INSERT INTO \(eventsTable) (job_id, seq, attempt, created_at, kind, data)
                            VALUES \(rows.joined(separator: ","))
                            ON CONFLICT (job_id, seq) DO NOTHING
                            """,
                            binds
                        )
                    }
                    return Set(leases.keys).subtracting(held)
                }
            } catch let error as SQLiteError where [.constraint, .constraintCheckFailed].contains(error.reason) {
                // The data check: not a JSON object. (ON CONFLICT, not INSERT OR IGNORE, which
                // would skip such a row without a word.)
                throw JobStoreError.valueRejected(error.message)
            } catch {
                throw Self.translate(error)
            }
        }
        return refused
    }

    public func events(jobID: UUID, after: Int64, limit: Int) async throws -> [JobEvent] {
        let rows = try await lock.withLock {
            try await connection.query(
                """
                SELECT seq, attempt, created_at, kind, data FROM \(eventsTable)
                WHERE job_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3
                """,
                [.text(jobID.lowercasedText), .integer(Int(after)), .integer(max(0, limit))]
            )
        }
        return try rows.map { row in
            guard let sequence = row.column("seq")?.integer, let attempt = row.column("attempt")?.integer,
                  let time = row.column("created_at")?.integer, let kind = row.column("kind")?.string, let data = row.column("data")?.string
            else { throw JobStoreError.corruptRow(id: jobID.lowercasedText, reason: "an event row has a NULL or mistyped column") }
            return JobEvent(jobID: jobID, sequence: Int64(sequence), attempt: attempt, time: Self.date(time), kind: JobEvent.Kind(rawValue: kind), data: data)
        }
    }
}
