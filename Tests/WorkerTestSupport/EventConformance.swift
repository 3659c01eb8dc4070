import Foundation
import Testing
import WorkerCore

/// The event semantics every driver must have (docs/WORKER_SERVICE.md, "Job events"): a job's
/// events numbered across its attempts, stored once, only while the writer's lease holds, read
/// back in order from any point, deleted with their job.
extension JobStoreConformance {
    public static let eventCases: [ConformanceCase] = [
        ConformanceCase(name: "a claim stores each job's claimed event; an outcome stores its ending event with it", body: eventsOfClaimAndOutcome),
        ConformanceCase(name: "events are stored in order and read back from any sequence number", body: eventsInOrder),
        ConformanceCase(name: "a page of events ends at a byte bound as well as a count: at most the bound plus one event, never empty while events follow", body: eventsPagedByBytes),
        ConformanceCase(name: "an event written again (a repeated write) is stored once", body: eventsIdempotent),
        ConformanceCase(name: "a lost lease stores nothing; the next attempt numbers its events on from the last", body: eventsFollowTheLease),
        ConformanceCase(name: "a given-back job's next run numbers on from its last event", body: eventsAfterRelease),
        ConformanceCase(
            name: "a release written again after its worker claimed the job again (the first answer lost) does not apply to the new run",
            body: releaseWrittenAgainAfterReclaim),
        ConformanceCase(name: "a cancelled job's worker still reports; events are deleted with their job", body: eventsOfCancelledJob),
        ConformanceCase(name: "data that is not a JSON object is refused as a value", body: eventsRefuseNonObjects),
        ConformanceCase(name: "events or an outcome after a lost event are refused (no gap ever), and the next attempt numbers on from the last stored", body: eventsNeverLeaveAGap),
        ConformanceCase(name: "each outcome adds its attempt's tokens, cost, CPU and run time to the job's (the peak memory the larger), only when it applies", body: usageSummed),
        ConformanceCase(name: "token counts stop at 2^53 - 1 (JavaScript's exact integers): an attempt at the top, then another, leave the job readable at the top", body: usageBounded),
    ]

    /// The event numbered `offset` after the claim's own `claimed` event.
    static func event(_ claimed: ClaimedJob, _ offset: Int64, _ kind: JobEvent.Kind = .output, _ data: String? = nil) -> NewJobEvent {
        let sequence = claimed.lastEventSequence + offset
        return NewJobEvent(lease: claimed.lease, sequence: sequence, kind: kind, data: data ?? #"{"text":"line \#(sequence)"}"#)
    }

    static func eventsOfClaimAndOutcome(_ store: any JobStore) async throws {
        let ids = try await store.enqueue([NewJob(prompt: "a"), NewJob(prompt: "b", maxAttempts: 3)])
        let jobs = try await store.claim(queues: ["default"], limit: 2, workerID: "worker-a", leaseDuration: .seconds(30))
        try #require(jobs.count == 2)
        #expect(jobs.allSatisfy { $0.lastEventSequence == 1 })
        for job in jobs {
            let claimed = try await store.events(jobID: job.job.id, after: 0, limit: 10)
            #expect(claimed.map(\.sequence) == [1])
            #expect(claimed.first?.kind == .status)
            #expect(claimed.first?.attempt == 1)
            #expect(objects(claimed) == [["status": "claimed", "workerId": "worker-a", "attempt": 1]] as [NSDictionary])
        }
        let a = try #require(jobs.first { $0.job.id == ids[0] }), b = try #require(jobs.first { $0.job.id == ids[1] })
        // One outcome with its ending event, one retry with its own; both in one write.
        let applied = try await store.record([
            JobCompletion(lease: a.lease, outcome: .completed(result: "{}"), event: .init(sequence: 2, data: #"{"status":"completed"}"#)),
            JobCompletion(lease: b.lease, outcome: .retry(error: "x", delay: .zero), event: .init(sequence: 2, data: #"{"status":"retry_scheduled"}"#)),
        ])
        #expect(applied == [true, true])
        #expect(objects(try await store.events(jobID: a.job.id, after: 1, limit: 10)) == [["status": "completed"]] as [NSDictionary])
        #expect(objects(try await store.events(jobID: b.job.id, after: 1, limit: 10)) == [["status": "retry_scheduled"]] as [NSDictionary])
        // The retry's claim numbers on: its `claimed` is 3, attempt 2.
        let again = try await claimOne(store, worker: "worker-b")
        #expect(again.job.id == b.job.id && again.lastEventSequence == 3)
        let events = try await store.events(jobID: b.job.id, after: 0, limit: 10)
        #expect(events.map(\.sequence) == [1, 2, 3])
        #expect(events.map(\.attempt) == [1, 1, 2])
        // An outcome that does not apply (the lease is gone) stores no ending event either.
        #expect(try await store.record([
            JobCompletion(lease: b.lease, outcome: .completed(result: "{}"), event: .init(sequence: 4, data: #"{"status":"completed"}"#)),
        ]) == [false])
        #expect(try await store.events(jobID: b.job.id, after: 3, limit: 10).isEmpty)
    }

    /// The data of `events` as objects (a driver may store JSON reformatted).
    static func objects(_ events: [JobEvent]) -> [NSDictionary] {
        events.map { (try? JSONSerialization.jsonObject(with: Data($0.data.utf8))) as? NSDictionary ?? [:] }
    }

    static func eventsInOrder(_ store: any JobStore) async throws {
        _ = try await store.enqueue([NewJob(prompt: "a"), NewJob(prompt: "b")])
        let jobs = try await store.claim(queues: ["default"], limit: 2, workerID: worker, leaseDuration: .seconds(30))
        try #require(jobs.count == 2)
        let (a, b) = (jobs[0], jobs[1])
        // Two jobs in one write, their events interleaved.
        let written = [
            event(a, 1, .status, #"{"status":"claimed","attempt":1}"#), event(b, 1), event(a, 2, .message, #"{"type":"assistant","n":[1,2]}"#),
            event(a, 3, .log, #"{"text":"é \"quoted\" \\ back"}"#), event(b, 2), event(a, 4), event(a, 5),
        ]
        #expect(try await store.appendEvents(written).isEmpty)
        let all = try await store.events(jobID: a.job.id, after: 1, limit: 100)
        #expect(all.map(\.sequence) == [2, 3, 4, 5, 6])
        #expect(all.map(\.kind) == [.status, .message, .log, .output, .output])
        #expect(all.allSatisfy { $0.jobID == a.job.id && $0.attempt == 1 })
        #expect(objects(all) == [
            ["status": "claimed", "attempt": 1], ["type": "assistant", "n": [1, 2]], ["text": "é \"quoted\" \\ back"],
            ["text": "line 5"], ["text": "line 6"],
        ] as [NSDictionary])
        #expect(all.allSatisfy { abs($0.time.timeIntervalSinceNow) < 60 })
        let page = try await store.events(jobID: a.job.id, after: 3, limit: 2)
        #expect(page.map(\.sequence) == [4, 5])
        #expect(try await store.events(jobID: a.job.id, after: 6, limit: 10).isEmpty)
        #expect(try await store.events(jobID: b.job.id, after: 0, limit: 10).map(\.sequence) == [1, 2, 3])
        #expect(try await store.events(jobID: UUID(), after: 0, limit: 10).isEmpty)
    }

    static func eventsPagedByBytes(_ store: any JobStore) async throws {
        _ = try await store.enqueue([NewJob(prompt: "a")])
        let job = try await claimOne(store)
        // Small events, then large ones (the case that made a page of 500 large events: pages
        // were sized by the last page's events), then small again.
        let large = String(repeating: "x", count: 10_000)
        let sizes = Array(repeating: 10, count: 5) + Array(repeating: 10_000, count: 6) + Array(repeating: 10, count: 3)
        let written = sizes.enumerated().map { index, size in
            event(job, Int64(index + 1), .output, #"{"text":"\#(size == 10 ? "small" : large)"}"#)
        }
        #expect(try await store.appendEvents(written).isEmpty)
        let all = try await store.events(jobID: job.job.id, after: 0, limit: 100)
        #expect(all.count == sizes.count + 1)
        let bytes = all.map(\.data.utf8.count)
        let maxBytes = 25_000
        var pages: [[JobEvent]] = []
        var after: Int64 = 0
        while pages.count < 50 {
            let page = try await store.events(jobID: job.job.id, after: after, limit: 4, maxBytes: maxBytes)
            guard let last = page.last else { break }
            pages.append(page)
            after = last.sequence
        }
        // Read whole, in order, once.
        #expect(pages.flatMap { $0 }.map(\.sequence) == all.map(\.sequence))
        for page in pages {
            let pageBytes = page.map(\.data.utf8.count)
            // Each event starts within the bound: the bytes before the last one are under it.
            #expect(pageBytes.dropLast().reduce(0, +) < maxBytes, "\(pageBytes)")
            #expect(page.count <= 4)
            // A page ends short of both bounds only at the end of the events.
            if !JobEventPaging.mayHaveMore(page, limit: 4, maxBytes: maxBytes) { #expect(page.last?.sequence == all.last?.sequence) }
        }
        // The bound holds at the large events: two whole and the start of a third (3 x ~10 KB).
        #expect(pages.contains { $0.map(\.data.utf8.count).filter { $0 > 9_000 }.count == 3 })
        // One event over the bound alone still comes.
        let one = try await store.events(jobID: job.job.id, after: 6, limit: 4, maxBytes: 1)
        #expect(one.map(\.sequence) == [7])
        #expect(bytes.reduce(0, +) > maxBytes)
    }

    static func eventsIdempotent(_ store: any JobStore) async throws {
        _ = try await store.enqueue([NewJob(prompt: "a")])
        let job = try await claimOne(store)
        let batch = (1...3).map { event(job, Int64($0)) }
        #expect(try await store.appendEvents(batch).isEmpty)
        // The answer was lost and the write repeated, with a new event behind it.
        var again = batch
        again[1].data = #"{"text":"changed"}"#
        #expect(try await store.appendEvents(again + [event(job, 4)]).isEmpty)
        let stored = try await store.events(jobID: job.job.id, after: 1, limit: 10)
        #expect(stored.map(\.sequence) == [2, 3, 4, 5])
        #expect(objects(stored)[1] == ["text": "line 3"], "the first write of an event stands")
    }

    static func eventsFollowTheLease(_ store: any JobStore) async throws {
        let id = try await store.enqueue([NewJob(prompt: "a", maxAttempts: 3)])[0]
        let first = try await claimOne(store, worker: "worker-a", lease: .milliseconds(200))
        #expect(try await store.appendEvents((1...3).map { event(first, Int64($0)) }).isEmpty)
        try await Task.sleep(for: .milliseconds(400))
        #expect(try await store.rescueExpiredLeases().map(\.id) == [id])
        // Between the rescue and the next claim, the late writer stores nothing.
        #expect(try await store.appendEvents([event(first, 4)]) == RefusedEvents(lostLeases: [first.lease]))
        let second = try await claimOne(store, worker: "worker-b")
        #expect(second.lease.attempt == 2)
        // 1 claimed, 2-4 lines, 5 the second claim.
        #expect(second.lastEventSequence == 5)
        #expect(try await store.appendEvents([event(first, 4), event(first, 5)]) == RefusedEvents(lostLeases: [first.lease]))
        // The first attempt's late events in one batch with the second's (its worker claimed the
        // job again): the lease is checked per event, so only the second attempt's are stored.
        #expect(try await store.appendEvents([event(first, 5), event(second, 1, .output), event(first, 6)]) == RefusedEvents(lostLeases: [first.lease]))
        let stored = try await store.events(jobID: id, after: 0, limit: 10)
        #expect(stored.map(\.sequence) == [1, 2, 3, 4, 5, 6])
        #expect(stored.map(\.attempt) == [1, 1, 1, 1, 2, 2])
        #expect(stored[5].kind == .output)
        #expect(stored[4].kind == .status)
        // And after the job finished, not even its own worker adds to it.
        #expect(try await store.record([JobCompletion(lease: second.lease, outcome: .completed(result: "{}"))]) == [true])
        #expect(try await store.appendEvents([event(second, 2)]) == RefusedEvents(lostLeases: [second.lease]))
        #expect(try await store.events(jobID: id, after: 6, limit: 10).isEmpty)
    }

    static func eventsAfterRelease(_ store: any JobStore) async throws {
        let id = try await store.enqueue([NewJob(prompt: "a")])[0]
        let first = try await claimOne(store)
        #expect(try await store.appendEvents([event(first, 1), event(first, 2)]).isEmpty)
        #expect(try await store.record([JobCompletion(lease: first.lease, outcome: .released)]) == [true])
        let again = try await claimOne(store)
        // Given back at shutdown, the job runs again under the same attempt number.
        #expect(again.lease.attempt == first.lease.attempt)
        // 1 claimed, 2-3 lines, 4 claimed again.
        #expect(again.lastEventSequence == 4)
        #expect(try await store.appendEvents([event(again, 1)]).isEmpty)
        #expect(try await store.events(jobID: id, after: 0, limit: 10).map(\.sequence) == [1, 2, 3, 4, 5])
    }

    static func releaseWrittenAgainAfterReclaim(_ store: any JobStore) async throws {
        let id = try await store.enqueue([NewJob(prompt: "a")])[0]
        let first = try await claimOne(store)
        // The release with its ending event, after the claimed event: applied, its answer lost.
        let release = JobCompletion(
            lease: first.lease, outcome: .released,
            event: JobCompletion.FinalEvent(sequence: first.lastEventSequence + 1, data: #"{"status":"released"}"#))
        #expect(try await store.record([release]) == [true])
        // The same worker claims the job again: the same attempt number, so the same lease in the table.
        let again = try await claimOne(store)
        #expect(again.lease.attempt == first.lease.attempt && again.lease.workerID == first.lease.workerID)
        // The release written again (the worker retries the write it has no answer to). Before:
        // applied to the new run, which went on running while its job was pending, unlocked.
        #expect(try await store.record([release]) == [false])
        let job = try #require(try await store.job(id: id))
        #expect(job.status == .processing && job.lockedBy == again.lease.workerID)
        let done = JobCompletion(
            lease: again.lease, outcome: .completed(result: "{}"),
            event: JobCompletion.FinalEvent(sequence: again.lastEventSequence + 1, data: #"{"status":"completed"}"#))
        #expect(try await store.record([done]) == [true])
        #expect(try await store.job(id: id)?.status == .completed)
    }

    static func eventsOfCancelledJob(_ store: any JobStore) async throws {
        let id = try await store.enqueue([NewJob(prompt: "a")])[0]
        let job = try await claimOne(store)
        #expect(try await store.appendEvents([event(job, 1)]).isEmpty)
        _ = try await store.cancel(id: id)
        #expect(try await store.appendEvents([event(job, 2, .status, #"{"status":"cancelled"}"#)]).isEmpty)
        #expect(try await store.events(jobID: id, after: 0, limit: 10).count == 3)
        try await Task.sleep(for: .milliseconds(100))
        #expect(try await store.deleteFinished(status: .cancelled, olderThan: .milliseconds(50), limit: 10) == 1)
        #expect(try await store.events(jobID: id, after: 0, limit: 10).isEmpty)
    }

    static func eventsRefuseNonObjects(_ store: any JobStore) async throws {
        let id = try await store.enqueue([NewJob(prompt: "a")])[0]
        let job = try await claimOne(store)
        for data in ["not json", "[1,2]", #""text""#] {
            do {
                _ = try await store.appendEvents([event(job, 1, .output, data)])
                Issue.record("\(data): stored, not refused")
            } catch JobStoreError.valueRejected {
                // As expected: the recorder stores a note in its place.
            } catch {
                Issue.record("\(data): \(error) is not valueRejected")
            }
        }
        #expect(try await store.events(jobID: id, after: 1, limit: 10).isEmpty, "nothing of a refused write is stored")
        #expect(try await store.appendEvents([event(job, 1)]).isEmpty)
    }

    /// A write answered and never committed (PostgreSQL stopped between the two) loses a batch
    /// the worker took as stored; whatever it writes of that attempt next must not be stored
    /// after the hole. Here the lost batch is simply one never written.
    static func eventsNeverLeaveAGap(_ store: any JobStore) async throws {
        let ids = try await store.enqueue([NewJob(prompt: "broken", maxAttempts: 3), NewJob(prompt: "fine")])
        let jobs = try await store.claim(queues: ["default"], limit: 2, workerID: "worker-a", leaseDuration: .milliseconds(300))
        try #require(jobs.count == 2)
        let broken = try #require(jobs.first { $0.job.id == ids[0] }), fine = try #require(jobs.first { $0.job.id == ids[1] })
        #expect(try await store.appendEvents([event(broken, 1), event(fine, 1)]).isEmpty)
        // Events 3 and 4 of the first job were lost; its 5 and 6 come in one batch with the other
        // job's next: only the other job's are stored.
        let refused = try await store.appendEvents([event(broken, 4), event(fine, 2), event(broken, 5)])
        #expect(refused == RefusedEvents(brokenStreams: [broken.lease]))
        #expect(try await store.events(jobID: broken.job.id, after: 0, limit: 10).map(\.sequence) == [1, 2])
        #expect(try await store.events(jobID: fine.job.id, after: 0, limit: 10).map(\.sequence) == [1, 2, 3])
        // Nor does its outcome apply: the job would end with a gap in its events.
        #expect(try await store.record([
            JobCompletion(lease: broken.lease, outcome: .completed(result: "{}"), event: .init(sequence: 7, data: #"{"status":"completed"}"#)),
            JobCompletion(lease: fine.lease, outcome: .completed(result: "{}"), event: .init(sequence: 4, data: #"{"status":"completed"}"#)),
        ]) == [false, true])
        let held = try #require(try await store.job(id: broken.job.id))
        #expect(held.status == .processing && held.lockedBy == "worker-a", "the job keeps its lease for the rescue")
        // The rescue gives it its next attempt, which numbers on from the last stored event.
        try await Task.sleep(for: .milliseconds(500))
        #expect(try await store.rescueExpiredLeases().map(\.id) == [broken.job.id])
        let again = try await claimOne(store, worker: "worker-b")
        #expect(again.job.id == broken.job.id && again.lastEventSequence == 3)
        #expect(try await store.appendEvents([event(again, 1)]).isEmpty)
        #expect(try await store.record([
            JobCompletion(lease: again.lease, outcome: .completed(result: "{}"), event: .init(sequence: 5, data: #"{"status":"completed"}"#)),
        ]) == [true])
        let events = try await store.events(jobID: broken.job.id, after: 0, limit: 10)
        #expect(events.map(\.sequence) == [1, 2, 3, 4, 5])
        #expect(events.map(\.attempt) == [1, 1, 2, 2, 2])
    }

    static func usageSummed(_ store: any JobStore) async throws {
        let id = try await store.enqueue([NewJob(prompt: "a", maxAttempts: 3)])[0]
        #expect(try await store.job(id: id)?.usage == .zero)
        let first = try await claimOne(store)
        let spent = JobUsage(inputTokens: 1_000, outputTokens: 200, costUSD: 0.25, cpuSeconds: 1.5, peakMemoryBytes: 300 << 20, runSeconds: 2.25)
        #expect(try await store.record([JobCompletion(lease: first.lease, outcome: .retry(error: "x", delay: .zero), usage: spent)]) == [true])
        // A late write of the lost lease adds nothing.
        #expect(try await store.record([JobCompletion(lease: first.lease, outcome: .completed(result: "{}"), usage: spent)]) == [false])
        let second = try await claimOne(store)
        let more = JobUsage(inputTokens: 500, outputTokens: 50, costUSD: 0.125, cpuSeconds: 0.5, peakMemoryBytes: 100 << 20, runSeconds: 1)
        #expect(try await store.record([JobCompletion(lease: second.lease, outcome: .completed(result: "{}"), usage: more)]) == [true])
        let job = try #require(try await store.job(id: id))
        #expect(job.usage == JobUsage(inputTokens: 1_500, outputTokens: 250, costUSD: 0.375, cpuSeconds: 2, peakMemoryBytes: 300 << 20, runSeconds: 3.25))
        #expect(try await store.jobs(matching: JobFilter(limit: 10, summary: true)).first?.usage == job.usage)
    }

    static func usageBounded(_ store: any JobStore) async throws {
        let id = try await store.enqueue([NewJob(prompt: "a", maxAttempts: 3)])[0]
        // What a handler may report; before, Int64.max was stored as it was, and the next
        // attempt's outcome overflowed (PostgreSQL refused it, SQLite stored a float that no
        // listing could read).
        let first = try await claimOne(store)
        let huge = JobUsage(inputTokens: .max, outputTokens: .max)
        #expect(try await store.record([JobCompletion(lease: first.lease, outcome: .retry(error: "x", delay: .zero), usage: huge)]) == [true])
        #expect(try await store.job(id: id)?.usage.inputTokens == JobUsage.maximumTokens)
        let second = try await claimOne(store)
        #expect(try await store.record([
            JobCompletion(lease: second.lease, outcome: .completed(result: "{}"), usage: JobUsage(inputTokens: 5, outputTokens: 7)),
        ]) == [true])
        let job = try #require(try await store.job(id: id))
        #expect(job.status == .completed)
        #expect(job.usage.inputTokens == JobUsage.maximumTokens && job.usage.outputTokens == JobUsage.maximumTokens)
        #expect(try await store.jobs(matching: JobFilter(limit: 10)).map(\.id) == [id])
        // Sums in the worker stop there too, and never go below zero.
        #expect((huge + huge).inputTokens == JobUsage.maximumTokens)
        #expect((JobUsage(inputTokens: -5) + JobUsage(inputTokens: 3)).inputTokens == 3)
    }
}
