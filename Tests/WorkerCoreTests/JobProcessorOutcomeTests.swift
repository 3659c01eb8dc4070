import Foundation
import Logging
import Synchronization
import Testing
import WorkerCore
import WorkerSQLite
import WorkerTestSupport

/// How the processor records outcomes when the store does not take them, and failures that
/// retrying cannot fix.
@Suite("JobProcessor outcomes")
struct JobProcessorOutcomeTests {
    struct Outage: Error, CustomStringConvertible { var description: String { "the database is unreachable" } }

    struct Instant: JobHandler {
        func handle(_ job: ClaimedJob, context: JobContext) async throws -> String { "{}" }
    }

    static func configuration(lease: Duration) -> JobProcessorConfiguration {
        var configuration = JobProcessorConfiguration(
            workerID: "test-\(UUID().uuidString.prefix(6))", maxConcurrentJobs: 1, pollInterval: .milliseconds(100), leaseDuration: lease,
            shutdownTimeout: .seconds(2), retryPolicy: RetryPolicy(base: .milliseconds(20), maximum: .milliseconds(50), jitter: 0))
        configuration.rescueInterval = .milliseconds(200)
        return configuration
    }

    @Test("outcomes unwritable for longer than a lease: the worker says so, stops renewing those jobs, and they return through the rescue")
    func unwritableOutcomes() async throws {
        try await withTemporarySQLiteStore { sqlite in
            let writable = Atomic<Bool>(false)
            let store = InstrumentedJobStore(sqlite, beforeRecord: { if !writable.load(ordering: .relaxed) { throw Outage() } })
            let id = try await store.enqueue([NewJob(prompt: "p", maxAttempts: 5)])[0]
            let processor = JobProcessor(store: store, handler: Instant(), configuration: Self.configuration(lease: .seconds(1)), logger: Logger(label: "test"))
            try await whileRunning(processor) {
                try await waitUntil { processor.oldestUnwrittenOutcomeAge != nil }
                #expect(!processor.outcomeWritesStalled)
                try await waitUntil(timeout: .seconds(5)) { processor.outcomeWritesStalled }
                // Its lease is no longer renewed: it expires and the job is rescued (here by this
                // same worker, which claims it again). Before, the lease was renewed for as long as
                // the writes failed, and the job stayed on attempt 1, hidden from every worker.
                try await waitUntil(timeout: .seconds(10)) { (try await sqlite.job(id: id)?.attempts ?? 0) >= 2 }
                writable.store(true, ordering: .relaxed)
                try await waitUntil(timeout: .seconds(10)) { try await sqlite.job(id: id)?.status == .completed }
                try await waitUntil(timeout: .seconds(5)) { !processor.outcomeWritesStalled }
            }
        }
    }

    @Test("a job cancelled while its outcome is on its way is free at once: retryable, its session's next turn let through")
    func cancelledWhileRecording() async throws {
        try await withTemporarySQLiteStore { sqlite in
            let session = UUID()
            let ids = try await sqlite.enqueue([NewJob(prompt: "first", sessionID: session), NewJob(prompt: "second", sessionID: session)])
            let cancelledOnce = Atomic<Bool>(false)
            // The operator's cancel lands between the handler's return and the outcome's write.
            let store = InstrumentedJobStore(sqlite, beforeRecord: {
                if !cancelledOnce.exchange(true, ordering: .relaxed) { _ = try await sqlite.cancel(id: ids[0]) }
            })
            // A 60 s lease: before, the job stayed held until it ran out and the rescue came. (The
            // wait is long for a loaded machine: in-process SQLite tests share one thread pool.)
            let processor = JobProcessor(store: store, handler: Instant(), configuration: Self.configuration(lease: .seconds(60)), logger: Logger(label: "test"))
            try await whileRunning(processor) {
                try await waitUntil(timeout: .seconds(30)) { try await sqlite.job(id: ids[1])?.status == .completed }
                let first = try #require(try await sqlite.job(id: ids[0]))
                #expect(first.status == .cancelled && first.leaseExpiresAt == nil)
                // Its events end with how the attempt ended, as every attempt's do.
                let last = try #require(try await sqlite.events(jobID: ids[0], after: 0, limit: 100).last)
                #expect(last.kind == .status && last.data.contains(#""status":"cancelled""#) && last.data.contains(#""refusedOutcome":"completed""#), "\(last.data)")
                #expect(try await sqlite.retry(id: ids[0]).status == .pending)
            }
        }
    }

    @Test(
        "the same when the job cannot be read right after the write: the read is tried again (2 failures), or the lease of a cancelled job is ended without knowing (every read fails)",
        arguments: [2, 1_000])
    func cancelledWhileRecordingUnreadable(failures: Int) async throws {
        try await withTemporarySQLiteStore { sqlite in
            let session = UUID()
            let ids = try await sqlite.enqueue([NewJob(prompt: "first", sessionID: session), NewJob(prompt: "second", sessionID: session)])
            let cancelledOnce = Atomic<Bool>(false)
            let readFailures = Atomic<Int>(0)
            struct Reset: Error {}
            let store = InstrumentedJobStore(
                sqlite,
                beforeRecord: {
                    if !cancelledOnce.exchange(true, ordering: .relaxed) { _ = try await sqlite.cancel(id: ids[0]) }
                },
                // The read that explains the refused write fails twice (a connection reset).
                beforeJob: {
                    if cancelledOnce.load(ordering: .relaxed), readFailures.add(1, ordering: .relaxed).newValue <= failures { throw Reset() }
                })
            let processor = JobProcessor(store: store, handler: Instant(), configuration: Self.configuration(lease: .seconds(60)), logger: Logger(label: "test"))
            try await whileRunning(processor) {
                // Before: the failed read counted as a lost lease, the lease was not ended, and the
                // next turn waited for the 60 s lease and the rescue.
                try await waitUntil(timeout: .seconds(30)) { try await sqlite.job(id: ids[1])?.status == .completed }
                let first = try #require(try await sqlite.job(id: ids[0]))
                #expect(first.status == .cancelled && first.leaseExpiresAt == nil)
                if failures < 5 {
                    // Known to be cancelled: its events end with it.
                    let last = try #require(try await sqlite.events(jobID: ids[0], after: 0, limit: 100).last)
                    #expect(last.kind == .status && last.data.contains(#""status":"cancelled""#), "\(last.data)")
                }
            }
        }
    }

    @Test("a payload the echo handler cannot read fails the job at once, without retries")
    func permanentFailure() async throws {
        try await withTemporarySQLiteStore { store in
            let id = try await store.enqueue([NewJob(prompt: "p", payload: #"{"sleepMs": "soon"}"#, maxAttempts: 3)])[0]
            let processor = JobProcessor(store: store, handler: EchoHandler(), configuration: Self.configuration(lease: .seconds(30)), logger: Logger(label: "test"))
            try await whileRunning(processor) {
                try await waitUntil { try await store.job(id: id)?.status == .failed }
            }
            let job = try #require(try await store.job(id: id))
            #expect(job.attempts == 1)
            #expect(job.lastError?.contains("sleepMs") == true)
        }
    }

    @Test("the storable form of an outcome has no NUL, wraps text that is not JSON, and cuts what is too long")
    func storableOutcome() throws {
        guard case .completed(let result) = JobOutcome.completed(result: #"{"a\u0000":"x\u0000y","n":[1,"\u0000"]}"#).storable() else {
            Issue.record("not completed")
            return
        }
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.utf8)) as? [String: Any])
        #expect(object["a"] as? String == "xy")
        #expect((object["n"] as? [Any])?.last as? String == "")
        guard case .completed(let wrapped) = JobOutcome.completed(result: "not json\u{0}").storable() else { return }
        #expect((try JSONSerialization.jsonObject(with: Data(wrapped.utf8)) as? [String: String])?["result"] == "not json")
        guard case .retry(let error, _) = JobOutcome.retry(error: String(repeating: "e", count: 200_000) + "\u{0}", delay: .seconds(1)).storable() else { return }
        #expect(error.utf8.count <= JobOutcome.maximumErrorBytes && error.hasSuffix("bytes]") && !error.contains("\u{0}"))
    }
}

extension JobProcessorOutcomeTests {
    /// Fails its first `deferrals` runs as a job that cannot run yet, then succeeds.
    final class NotYet: JobHandler {
        struct Busy: DeferredJobError, CustomStringConvertible {
            var isDeferred: Bool { true }
            var retryAfter: Duration? { .milliseconds(100) }
            var description: String { "what it needs is busy" }
        }

        let runs = Atomic<Int>(0)
        let deferrals: Int

        init(deferrals: Int) { self.deferrals = deferrals }

        func handle(_ job: ClaimedJob, context: JobContext) async throws -> String {
            if runs.add(1, ordering: .relaxed).newValue <= deferrals { throw Busy() }
            return "{}"
        }
    }

    @Test("a job that cannot run yet (DeferredJobError) goes back for later without using an attempt, however often")
    func deferredJob() async throws {
        try await withTemporarySQLiteStore { store in
            let id = try await store.enqueue([NewJob(prompt: "p", maxAttempts: 1)])[0]
            let handler = NotYet(deferrals: 3)
            let processor = JobProcessor(store: store, handler: handler, configuration: Self.configuration(lease: .seconds(30)), logger: Logger(label: "test"))
            try await whileRunning(processor) {
                // Long for a loaded machine: in-process SQLite tests share one thread pool.
                try await waitUntil(timeout: .seconds(40)) { try await store.job(id: id)?.status == .completed }
            }
            let job = try #require(try await store.job(id: id))
            #expect(job.status == .completed && job.attempts == 1, "one attempt of one allowed, after three deferrals")
            #expect(handler.runs.load(ordering: .relaxed) == 4)
            let released = try await store.events(jobID: id, after: 0, limit: 100).filter { $0.data.contains(#""reason":"deferred""#) }
            #expect(released.count == 3)
        }
    }
}

extension JobProcessorOutcomeTests {
    struct Refused: Error, CustomStringConvertible { var description: String { "permission denied for table coding_jobs" } }

    @Test("a claim that keeps failing waits its backoff, however many jobs are enqueued meanwhile (each one's notification woke it)")
    func failingClaimsBackOff() async throws {
        try await withTemporarySQLiteStore { sqlite in
            let claims = Atomic<Int>(0)
            let store = InstrumentedJobStore(sqlite, beforeClaim: {
                claims.add(1, ordering: .relaxed)
                throw Refused()
            })
            var configuration = Self.configuration(lease: .seconds(30))
            configuration.pollInterval = .seconds(5)
            let processor = JobProcessor(store: store, handler: Instant(), configuration: configuration, logger: Logger(label: "test"))
            try await whileRunning(processor) {
                try await waitUntil { claims.load(ordering: .relaxed) >= 1 }
                // 40 enqueues over a second, each waking the claim loop.
                for index in 0..<40 {
                    _ = try await store.enqueue([NewJob(prompt: "job \(index)")])
                    processor.notifyJobsAvailable()
                    try await Task.sleep(for: .milliseconds(25))
                }
            }
            // Backoff 100, 200, 400, 800 ms...: a handful of claims in that second, not one per job.
            let count = claims.load(ordering: .relaxed)
            #expect(count <= 8, "\(count) claims")
        }
    }

    @Test("once told to stop claiming (the first shutdown signal), the processor claims nothing more and is not claiming")
    func stopsClaiming() async throws {
        try await withTemporarySQLiteStore { sqlite in
            let claims = Atomic<Int>(0)
            let store = InstrumentedJobStore(sqlite, afterClaim: { _ in claims.add(1, ordering: .relaxed) })
            let processor = JobProcessor(store: store, handler: Instant(), configuration: Self.configuration(lease: .seconds(30)), logger: Logger(label: "test"))
            try await whileRunning(processor) {
                try await waitUntil { processor.isClaiming && claims.load(ordering: .relaxed) > 0 }
                processor.stopClaiming()
                #expect(!processor.isClaiming)
                // A claim already on its way when told may still end; none starts after it.
                try await Task.sleep(for: .milliseconds(500))
                let before = claims.load(ordering: .relaxed)
                let id = try await sqlite.enqueue([NewJob(prompt: "late")])[0]
                processor.notifyJobsAvailable()
                try await Task.sleep(for: .milliseconds(800))
                let after = claims.load(ordering: .relaxed)
                #expect(after == before, "claims after being told to stop")
                #expect(try await sqlite.job(id: id)?.status == .pending)
            }
        }
    }
}
