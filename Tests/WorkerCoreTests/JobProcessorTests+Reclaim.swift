import Foundation
import Logging
import Synchronization
import Testing
import WorkerCore
import WorkerTestSupport

/// A worker late renewing a lease: another worker rescues the job, and this worker claims it
/// again while its earlier attempt still runs.
extension JobProcessorTests {
    /// Attempt 1 runs until stopped; attempt 2 runs longer than two leases, then completes.
    final class ReclaimProbe: JobHandler {
        struct Seen { var started: [Int] = [], stopped: [Int] = [] }
        let seen = Mutex(Seen())
        let secondRun: Duration

        init(secondRun: Duration) { self.secondRun = secondRun }

        func handle(_ job: ClaimedJob, context: JobContext) async throws -> String {
            let attempt = job.lease.attempt
            seen.withLock { $0.started.append(attempt) }
            await context.emit(.output, text: "attempt \(attempt) started")
            do {
                try await Task.sleep(for: attempt == 1 ? .seconds(120) : secondRun)
            } catch {
                seen.withLock { $0.stopped.append(attempt) }
                // A late line of the stopped attempt: its lease is gone, so it is never stored.
                await context.emit(.output, text: "attempt \(attempt) stopping")
                throw error
            }
            await context.emit(.output, text: "attempt \(attempt) done")
            return #"{"attempt":\#(attempt)}"#
        }
    }

    @Test("a job rescued from this worker and claimed back by it: the earlier attempt stops, the new one keeps its lease and completes, the events stay one sequence")
    func claimedBackWhileStillRunning() async throws {
        try await withTemporarySQLiteStore { sqlite in
            let renewing = Atomic<Bool>(false)
            struct Late: Error {}
            // Renewals fail while `renewing` is off: the worker is late, as under load.
            let store = InstrumentedJobStore(sqlite, beforeRenew: { if !renewing.load(ordering: .relaxed) { throw Late() } })
            // Long enough that a renewal is not missed on a loaded machine (at 1.5 s, a full run's
            // load once let attempt 2's lease lapse, and a third attempt ran).
            let lease = Duration.seconds(3)
            let probe = ReclaimProbe(secondRun: lease * 2 + .milliseconds(500))
            let processor = JobProcessor(
                store: store, handler: probe, configuration: Self.configuration(maxConcurrent: 2, lease: lease, poll: .milliseconds(50)),
                logger: Logger(label: "test"))
            let id = try await sqlite.enqueue([NewJob(prompt: "turn", maxAttempts: 5)])[0]
            try await Self.running(processor) {
                try await Self.waitUntil { probe.seen.withLock { $0.started } == [1] }
                // Attempt 1's first line stored before its lease runs out: on a loaded machine its
                // write could otherwise come after the rescue and be refused, and the test is about
                // the reclaim, not the timing.
                try await Self.waitUntil { try await sqlite.events(jobID: id, after: 0, limit: 10).contains { $0.kind == .output } }
                try await Task.sleep(for: lease + .milliseconds(200))
                // Another worker's rescue sweep (this worker spares its own jobs).
                #expect(try await sqlite.rescueExpiredLeases(sparing: []).map(\.id) == [id])
                renewing.store(true, ordering: .relaxed)
                try await Self.waitUntil(timeout: .seconds(10)) { probe.seen.withLock { $0.started } == [1, 2] }
                // The claim is a new attempt: the earlier one's lease is gone, and it stops now.
                try await Self.waitUntil(timeout: .seconds(5)) { probe.seen.withLock { $0.stopped } == [1] }
                try await Self.waitUntil { try await sqlite.job(id: id)?.status == .completed }
                try await Self.waitUntil(timeout: .seconds(5)) { processor.runningJobCount == 0 }
            }
            let job = try #require(try await sqlite.job(id: id))
            // Attempt 2 ran past two leases: its lease was renewed (the earlier attempt's end
            // did not take its entry with it), so no third attempt.
            #expect(job.attempts == 2)
            #expect(job.result == #"{"attempt":2}"#)
            #expect(probe.seen.withLock { $0.started } == [1, 2])
            let events = try await sqlite.events(jobID: id, after: 0, limit: 100)
            #expect(events.map(\.sequence) == Array(1..<Int64(events.count) + 1), "one sequence, no gap")
            let texts = events.compactMap { event -> String? in
                guard event.kind == .output, let object = try? JSONSerialization.jsonObject(with: Data(event.data.utf8)) as? [String: Any] else { return nil }
                return object["text"] as? String
            }
            #expect(texts == ["attempt 1 started", "attempt 2 started", "attempt 2 done"])
            #expect(events.last?.kind == .status && events.last?.data.contains(#""completed""#) == true)
        }
    }
}

extension JobProcessorTests {
    /// Prints a line every 100 ms until stopped, and says whether it was.
    final class ChattyProbe: JobHandler {
        let stopped = Atomic<Bool>(false)
        let started = Atomic<Bool>(false)

        func handle(_ job: ClaimedJob, context: JobContext) async throws -> String {
            started.store(true, ordering: .relaxed)
            do {
                for step in 0..<300 {
                    await context.emit(.output, text: "step \(step)")
                    try await Task.sleep(for: .milliseconds(100))
                }
            } catch {
                stopped.store(true, ordering: .relaxed)
                throw error
            }
            return "{}"
        }
    }

    @Test("renewals failing for good, the job rescued and claimed by another worker: the store's refusal of the attempt's events stops it within moments")
    func lostLeaseSeenByEvents() async throws {
        try await withTemporarySQLiteStore { sqlite in
            struct Down: Error {}
            // The renewals' own connection is gone; the others work.
            let store = InstrumentedJobStore(sqlite, beforeRenew: { throw Down() })
            let lease = Duration.seconds(2)
            let probe = ChattyProbe()
            let processor = JobProcessor(
                store: store, handler: probe, configuration: Self.configuration(maxConcurrent: 1, lease: lease, poll: .milliseconds(50)),
                logger: Logger(label: "test"))
            let id = try await sqlite.enqueue([NewJob(prompt: "turn", maxAttempts: 5)])[0]
            try await Self.running(processor) {
                try await Self.waitUntil { probe.started.load(ordering: .relaxed) }
                try await Task.sleep(for: lease + .milliseconds(300))
                // Another worker: its rescue sweep, then its claim.
                #expect(try await sqlite.rescueExpiredLeases(sparing: []).map(\.id) == [id])
                let other = try await sqlite.claim(queues: ["default"], limit: 1, workerID: "other-worker", leaseDuration: .seconds(60))
                #expect(other.map(\.job.id) == [id])
                // Before: the attempt ran on for its whole 30 s beside the other worker's.
                try await Self.waitUntil(timeout: .seconds(3)) { probe.stopped.load(ordering: .relaxed) }
                try await Self.waitUntil(timeout: .seconds(5)) { processor.runningJobCount == 0 }
            }
            let stopped = probe.stopped.load(ordering: .relaxed)
            #expect(stopped)
            #expect(try await sqlite.job(id: id)?.lockedBy == "other-worker", "the other worker's attempt untouched")
        }
    }
}
