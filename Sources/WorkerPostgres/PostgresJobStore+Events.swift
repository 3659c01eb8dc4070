import Foundation
import Logging
import PostgresNIO
import WorkerCore

/// Job events (docs/WORKER_SERVICE.md, "Job events"): the events table beside the jobs table.
extension PostgresJobStore {
    public func appendEvents(_ events: [NewJobEvent]) async throws -> Set<Lease> {
        try await translatingErrors {
            guard !events.isEmpty else { return [] }
            var ids: [UUID] = [], workers: [String] = [], attempts: [Int] = [], sequences: [Int64] = []
            var kinds: [String] = [], data: [String] = []
            ids.reserveCapacity(events.count)
            sequences.reserveCapacity(events.count)
            data.reserveCapacity(events.count)
            for event in events {
                ids.append(event.lease.jobID)
                workers.append(event.lease.workerID)
                attempts.append(event.lease.attempt)
                sequences.append(event.sequence)
                kinds.append(event.kind.rawValue)
                data.append(event.data)
            }
            var bindings = PostgresBindings(capacity: 6)
            bindings.append(ids)
            bindings.append(workers)
            bindings.append(attempts)
            bindings.append(sequences)
            bindings.append(kinds)
            bindings.append(data)
            let rows = try await Self.retryingDeadlocks { try await self.rows(of: schema.appendEventsStatement, bindings) }
            // A held row names its lease's job and attempt (its worker is the one the events gave).
            var held: [UUID: Int] = [:]
            for row in rows {
                let (id, attempt) = try row.decode((UUID, Int).self)
                held[id] = attempt
            }
            var refused = Set<Lease>()
            for event in events where held[event.lease.jobID] != event.lease.attempt { refused.insert(event.lease) }
            return refused
        }
    }

    public func events(jobID: UUID, after: Int64, limit: Int) async throws -> [JobEvent] {
        try await translatingErrors {
            let rows = try await client.query(
                """
                SELECT seq, attempt, created_at, kind, data::text FROM \(unescaped: schema.eventsTable)
                WHERE job_id = \(jobID) AND seq > \(after) ORDER BY seq LIMIT \(max(0, limit))
                """,
                logger: logger
            ).collect()
            return try rows.map { row in
                let (sequence, attempt, time, kind, data) = try row.decode((Int64, Int, Date, String, String).self)
                return JobEvent(jobID: jobID, sequence: sequence, attempt: attempt, time: time, kind: JobEvent.Kind(rawValue: kind), data: data)
            }
        }
    }
}
