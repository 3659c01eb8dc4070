import Foundation
import Logging
import PostgresNIO
import WorkerCore

/// Job events (docs/WORKER_SERVICE.md, "Job events"): the events table beside the jobs table.
extension PostgresJobStore {
    public func appendEvents(_ events: [NewJobEvent]) async throws -> RefusedEvents {
        try await translatingErrors {
            guard !events.isEmpty else { return RefusedEvents() }
            // The batch's leases once each (a few), with the sequence number each lease's first
            // event follows, and per event the index of its lease.
            var leases: [Lease] = [], previous: [Int64] = [], leaseIndex: [Lease: Int32] = [:]
            var eventLeases: [Int32] = [], sequences: [Int64] = [], kinds: [String] = [], data: [String] = []
            eventLeases.reserveCapacity(events.count)
            sequences.reserveCapacity(events.count)
            kinds.reserveCapacity(events.count)
            data.reserveCapacity(events.count)
            var last: (lease: Lease, index: Int32)?
            for event in events {
                let index: Int32
                if let last, last.lease == event.lease {
                    index = last.index
                } else if let known = leaseIndex[event.lease] {
                    index = known
                } else {
                    leases.append(event.lease)
                    previous.append(event.sequence - 1)
                    index = Int32(leases.count)
                    leaseIndex[event.lease] = index
                }
                last = (event.lease, index)
                eventLeases.append(index)
                sequences.append(event.sequence)
                kinds.append(event.kind.rawValue)
                data.append(event.data)
            }
            var bindings = PostgresBindings(capacity: 8)
            bindings.append(leases.map(\.jobID))
            bindings.append(leases.map(\.workerID))
            bindings.append(leases.map(\.attempt))
            bindings.append(eventLeases)
            bindings.append(sequences)
            bindings.append(kinds)
            bindings.append(data)
            bindings.append(previous)
            let rows = try await Self.retryingDeadlocks {
                do {
                    return try await self.rows(of: schema.appendEventsStatement, bindings)
                } catch where Self.isUniqueViolation(error) {
                    // Some of these are stored already (a write repeated after its answer was lost).
                    return try await self.rows(of: schema.appendEventsAgainStatement, bindings)
                }
            }
            // Per lease that holds, its index: positive when its events were stored, negative
            // when they would have followed an event that is not stored (a broken stream).
            var answered = Set<Int32>()
            for row in rows { answered.insert(try row.decode(Int32.self)) }
            // The statement's last row is 0 whatever held. Without it, the answer was cut short
            // and nothing can be concluded: taking the missing leases as refused would drop
            // events that may not be stored (a gap in a job's events, seen once in a chaos run
            // with a PostgreSQL restart). The write is made again (it is idempotent).
            guard answered.remove(0) != nil else {
                throw PostgresJobStoreError.database("the answer to a job events write was cut short (\(rows.count) rows); it is made again")
            }
            var refused = RefusedEvents()
            for (offset, lease) in leases.enumerated() {
                let index = Int32(offset + 1)
                if answered.contains(-index) {
                    refused.brokenStreams.insert(lease)
                } else if !answered.contains(index) {
                    refused.lostLeases.insert(lease)
                }
            }
            return refused
        }
    }

    public func events(jobID: UUID, after: Int64, limit: Int, maxBytes: Int) async throws -> [JobEvent] {
        try await translatingErrors {
            // The innermost LIMIT bounds what is read, each event's text made once; the running
            // sum keeps each event that starts under `maxBytes` (the first one always does), so
            // the page ends at the bound.
            let rows = try await query(
                "events",
                """
                SELECT seq, attempt, created_at, kind, data FROM (
                    SELECT *, sum(octet_length(data)) OVER (ORDER BY seq) - octet_length(data) AS before FROM (
                        SELECT seq, attempt, created_at, kind, data::text AS data FROM \(unescaped: schema.eventsTable)
                        WHERE job_id = \(jobID) AND seq > \(after) ORDER BY seq LIMIT \(max(0, limit))
                    ) AS read
                ) AS page WHERE before < \(max(1, maxBytes)) ORDER BY seq
                """
            )
            return try rows.map { row in
                let (sequence, attempt, time, kind, data) = try row.decode((Int64, Int, Date, String, String).self)
                return JobEvent(jobID: jobID, sequence: sequence, attempt: attempt, time: time, kind: JobEvent.Kind(rawValue: kind), data: data)
            }
        }
    }
}
