import Foundation
import SQLiteNIO
import WorkerCore

/// Job events (docs/WORKER_SERVICE.md, "Job events"): the `<table>_events` table.
extension SQLiteJobStore {
    var eventsTable: String { "\"\(JobEvent.tableName(forJobsTable: table))\"" }

    public func appendEvents(_ events: [NewJobEvent]) async throws -> RefusedEvents {
        guard !events.isEmpty else { return RefusedEvents() }
        // By lease, not by job: an earlier attempt's late events may share a batch with the
        // current attempt's (this worker claimed the job again), and only the current ones hold.
        // Each lease's events follow the event before its first in the batch.
        var previous: [Lease: Int64] = [:]
        for event in events where previous[event.lease] == nil { previous[event.lease] = event.sequence - 1 }
        let leases = Array(previous.keys)
        let refused: RefusedEvents = try await lock.withLock {
            try await boundBusyWait("writing job events")
            do {
                return try await inTransaction {
                    // The time once the file's write lock is held (see ``inTransaction(_:)``).
                    let now = Self.milliseconds(Date())
                    // Whose lease holds, with the job's last stored event, in one statement;
                    // then the events of those jobs that follow it (no gap: see JobStore).
                    var held: [UUID: (attempt: Int, lastSequence: Int64)] = [:]
                    for start in stride(from: 0, to: leases.count, by: 300) {
                        let chunk = leases[start..<min(start + 300, leases.count)]
                        var conditions: [String] = []
                        var binds: [SQLiteData] = []
                        for lease in chunk {
                            conditions.append("(id = ?\(binds.count + 1) AND locked_by = ?\(binds.count + 2) AND attempts = ?\(binds.count + 3))")
                            binds += [.text(lease.jobID.lowercasedText), .text(lease.workerID), .integer(lease.attempt)]
                        }
                        let rows = try await connection.query(
                            """
                            SELECT id, attempts, (SELECT coalesce(max(e.seq), 0) FROM \(eventsTable) AS e WHERE e.job_id = "\(table)".id) AS last_seq
                            FROM "\(table)" WHERE status IN ('processing', 'cancelled') AND (\(conditions.joined(separator: " OR ")))
                            """,
                            binds
                        )
                        for row in rows {
                            if let id = row.column("id")?.string.flatMap(UUID.init(uuidString:)), let attempt = row.column("attempts")?.integer {
                                held[id] = (attempt, Int64(row.column("last_seq")?.integer ?? 0))
                            }
                        }
                    }
                    var refused = RefusedEvents()
                    for lease in leases {
                        guard let job = held[lease.jobID], job.attempt == lease.attempt else {
                            refused.lostLeases.insert(lease)
                            continue
                        }
                        if job.lastSequence < previous[lease]! { refused.brokenStreams.insert(lease) }
                    }
                    try await insertEvents(
                        events.filter { held[$0.lease.jobID]?.attempt == $0.lease.attempt && !refused.brokenStreams.contains($0.lease) }
                            .map { ($0.lease.jobID, $0.sequence, $0.lease.attempt, $0.kind, $0.data) },
                        now: now)
                    return refused
                }
            } catch let error as SQLiteError where [.constraint, .constraintCheckFailed].contains(error.reason) {
                // The data check: not a JSON object.
                throw JobStoreError.valueRejected(error.message)
            } catch {
                throw Self.translate(error)
            }
        }
        return refused
    }

    /// Inserts events (job, sequence, attempt, kind, data), skipping those already stored. Called
    /// inside a transaction, with ``lock`` held.
    func insertEvents(_ events: [(UUID, Int64, Int, JobEvent.Kind, String)], now: Int) async throws {
        for start in stride(from: 0, to: events.count, by: 500) {
            let chunk = events[start..<min(start + 500, events.count)]
            var rows: [String] = []
            var binds: [SQLiteData] = []
            binds.reserveCapacity(chunk.count * 6)
            for (job, sequence, attempt, kind, data) in chunk {
                let base = binds.count
                rows.append("(?\(base + 1), ?\(base + 2), ?\(base + 3), ?\(base + 4), ?\(base + 5), ?\(base + 6))")
                binds += [.text(job.lowercasedText), .integer(Int(sequence)), .integer(attempt), .integer(now), .text(kind.rawValue), .text(data)]
            }
            // ON CONFLICT, not INSERT OR IGNORE, which would also skip a row failing the data check.
            _ = try await connection.query(
                """
                INSERT INTO \(eventsTable) (job_id, seq, attempt, created_at, kind, data)
                VALUES \(rows.joined(separator: ","))
                ON CONFLICT (job_id, seq) DO NOTHING
                """,
                binds
            )
        }
    }

    /// The `claimed` events of the jobs a claim returned (``SQLiteSchema/columns`` and `last_event_seq`).
    func insertClaimedEvents(_ rows: [SQLiteRow], workerID: String, now: Int) async throws {
        var events: [(UUID, Int64, Int, JobEvent.Kind, String)] = []
        events.reserveCapacity(rows.count)
        for row in rows {
            guard let id = row.column("id")?.string.flatMap(UUID.init(uuidString:)), let attempt = row.column("attempts")?.integer else { continue }
            let last = Int64(row.column("last_event_seq")?.integer ?? 0)
            events.append((id, last + 1, attempt, .status, #"{"status":"claimed","workerId":"# + JSONText.quoted(workerID) + #","attempt":\#(attempt)}"#))
        }
        try await insertEvents(events, now: now)
    }

    /// No notifications on a file: readers poll (cheap on a local file).
    public func watchEvents(onJobs: @escaping @Sendable ([UUID]) -> Void) async throws {}

    public func events(jobID: UUID, after: Int64, limit: Int, maxBytes: Int) async throws -> [JobEvent] {
        let rows = try await readLock.withLock {
            // The inner LIMIT bounds what is read; the running sum keeps each event that starts
            // under `maxBytes` (the first one always does), so the page ends at the bound.
            try await reader.query(
                """
                SELECT seq, attempt, created_at, kind, data FROM (
                    SELECT seq, attempt, created_at, kind, data,
                           sum(length(CAST(data AS BLOB))) OVER (ORDER BY seq) - length(CAST(data AS BLOB)) AS before
                    FROM \(eventsTable)
                    WHERE job_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3
                ) WHERE before < ?4 ORDER BY seq
                """,
                [.text(jobID.lowercasedText), .integer(Int(after)), .integer(max(0, limit)), .integer(max(1, maxBytes))]
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
