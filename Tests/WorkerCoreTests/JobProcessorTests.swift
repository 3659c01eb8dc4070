import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Testing
import WorkerCore
import WorkerSQLite
import WorkerTestSupport

/// The processor against a real SQLite file.
@Suite("JobProcessor")
struct JobProcessorTests {
    /// Counts handler calls and the most that ran at once.
    final class Probe: JobHandler {
        struct Counts { var running = 0, peak = 0, calls = 0 }
        let counts = Mutex(Counts())
        let sleep: Duration
        /// The prompt of the only jobs that sleep, if not all.
        let only: String?
        let fail: @Sendable (ClaimedJob) -> Bool

        init(sleep: Duration, only: String? = nil, fail: @escaping @Sendable (ClaimedJob) -> Bool = { _ in false }) {
            self.sleep = sleep
            self.only = only
            self.fail = fail
        }

        func handle(_ job: ClaimedJob, context: JobContext) async throws -> String {
            counts.withLock {
                $0.running += 1
                $0.calls += 1
                $0.peak = max($0.peak, $0.running)
            }
            defer { counts.withLock { $0.running -= 1 } }
            if only == nil || job.job.prompt == only { try await Task.sleep(for: sleep) }
            if fail(job) { throw ProbeError.planned(job.lease.attempt) }
            return #"{"ok":true}"#
        }
    }

    enum ProbeError: Error { case planned(Int) }

    static func configuration(
        maxConcurrent: Int = 1,
        lease: Duration = .seconds(30),
        shutdownTimeout: Duration = .seconds(5),
        poll: Duration = .milliseconds(100)
    ) -> JobProcessorConfiguration {
        JobProcessorConfiguration(
            workerID: "test-\(UUID().uuidString.prefix(6))",
            maxConcurrentJobs: maxConcurrent,
            pollInterval: poll,
            leaseDuration: lease,
            shutdownTimeout: shutdownTimeout,
            retryPolicy: RetryPolicy(base: .milliseconds(20), maximum: .milliseconds(50), jitter: 0)
        )
    }

    static func running<T: Sendable>(_ processor: JobProcessor, _ body: () async throws -> T) async throws -> T {
        try await whileRunning(processor, body)
    }

    static func waitUntil(
        // Generous: at the start of a full run (after a cold build, beside the PostgreSQL
        // suites' DDL and fsyncs) one SQLite job cycle took over a second; the conditions
        // check what happened, not how fast.
        timeout: Duration = .seconds(45), sourceLocation: SourceLocation = #_sourceLocation, _ condition: () async throws -> Bool
    ) async throws {
        try await WorkerTestSupport.waitUntil(timeout: timeout, sourceLocation: sourceLocation, condition)
    }

    @Test("never runs more than maxConcurrentJobs at once, and uses them all", arguments: [1, 3])
    func concurrencyLimit(maxConcurrent: Int) async throws {
        try await withTemporarySQLiteStore { store in
            _ = try await store.enqueue((0..<12).map { NewJob(prompt: "j\($0)") })
            let probe = Probe(sleep: .milliseconds(60))
            let processor = JobProcessor(store: store, handler: probe, configuration: Self.configuration(maxConcurrent: maxConcurrent), logger: Logger(label: "test"))
            try await Self.running(processor) {
                try await Self.waitUntil { try await store.stats().completed == 12 }
            }
            let counts = probe.counts.withLock { $0 }
            #expect(counts.peak == maxConcurrent)
            #expect(counts.calls == 12)
        }
    }

    @Test("when outcome writes are slower than the handlers, claiming waits for them: the backlog stays bounded")
    func boundedOutcomeBacklog() async throws {
        try await withTemporarySQLiteStore { sqlite in
            // Outcome writes 100 ms slower, as on a slow or distant database.
            let store = InstrumentedJobStore(sqlite, beforeRecord: { try await Task.sleep(for: .milliseconds(100)) })
            _ = try await store.enqueue((0..<60).map { NewJob(prompt: "j\($0)") })
            let probe = Probe(sleep: .zero)
            var configuration = Self.configuration(maxConcurrent: 4)
            configuration.outcomeBatchSize = 4
            let processor = JobProcessor(store: store, handler: probe, configuration: configuration, logger: Logger(label: "test"))
            let peak = Mutex(0)
            try await Self.running(processor) {
                try await Self.waitUntil(timeout: .seconds(30)) {
                    peak.withLock { $0 = max($0, processor.runningJobCount) }
                    return try await store.stats().completed == 60
                }
            }
            // Four handlers plus at most four jobs (one write) waiting for their outcome. Before the
            // bound, instant handlers kept their slots turning over and all 60 piled up at once.
            #expect(peak.withLock { $0 } <= 8)
            #expect(probe.counts.withLock { $0.calls } == 60)
        }
    }

    @Test("a failing job is retried with backoff until it succeeds or runs out of attempts")
    func retries() async throws {
        try await withTemporarySQLiteStore { store in
            let ids = try await store.enqueue([NewJob(prompt: "flaky", maxAttempts: 3), NewJob(prompt: "broken", maxAttempts: 2)])
            let probe = Probe(sleep: .milliseconds(1)) { job in job.job.prompt == "broken" || job.lease.attempt < 3 }
            let processor = JobProcessor(store: store, handler: probe, configuration: Self.configuration(poll: .seconds(10)), logger: Logger(label: "test"))
            try await Self.running(processor) {
                try await Self.waitUntil {
                    let stats = try await store.stats()
                    return stats.completed == 1 && stats.failed == 1
                }
            }
            let flaky = try #require(try await store.job(id: ids[0]))
            #expect(flaky.status == .completed && flaky.attempts == 3)
            let broken = try #require(try await store.job(id: ids[1]))
            #expect(broken.status == .failed && broken.attempts == 2 && broken.lastError?.contains("planned") == true)
        }
    }

    @Test("shutdown past its timeout gives running jobs back, attempt not counted")
    func shutdownReleases() async throws {
        try await withTemporarySQLiteStore { store in
            let id = try await store.enqueue([NewJob(prompt: "long")])[0]
            let processor = JobProcessor(
                store: store,
                handler: Probe(sleep: .seconds(60)),
                configuration: Self.configuration(shutdownTimeout: .milliseconds(300)),
                logger: Logger(label: "test")
            )
            let clock = ContinuousClock()
            var stopped = clock.now
            try await Self.running(processor) {
                try await Self.waitUntil { try await store.job(id: id)?.status == .processing }
                stopped = clock.now
            }
            // Far less than the handler's 60 s (a loaded run once took 3.7 s to give the job back).
            #expect(clock.now - stopped < .seconds(20))
            let job = try #require(try await store.job(id: id))
            #expect(job.status == .pending && job.attempts == 0 && job.lockedBy == nil)
        }
    }

    @Test("cancelling the processor stops its running jobs at once, and it returns only after their handlers ended")
    func cancellationStopsJobs() async throws {
        try await withTemporarySQLiteStore { store in
            _ = try await store.enqueue([NewJob(prompt: "long 1"), NewJob(prompt: "long 2")])
            let probe = Probe(sleep: .seconds(60))
            let processor = JobProcessor(
                store: store,
                handler: probe,
                configuration: Self.configuration(maxConcurrent: 2, shutdownTimeout: .seconds(60)),
                logger: Logger(label: "test")
            )
            let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: [processor], logger: Logger(label: "test")))
            let clock = ContinuousClock()
            let task = Task { try await group.run() }
            try await Self.waitUntil { probe.counts.withLock { $0.running } == 2 }
            let cancelled = clock.now
            task.cancel()
            _ = await task.result
            // Neither the jobs (60 s) nor the shutdown timeout (60 s) was waited for...
            #expect(clock.now - cancelled < .seconds(5))
            // ...and no handler still runs once the processor returned.
            #expect(probe.counts.withLock { ($0.running, $0.calls) } == (0, 2))
        }
    }

    @Test("a job's outcome is finished as soon as it is written, even when no other outcome follows it")
    func lastOutcomeFinishes() async throws {
        try await withTemporarySQLiteStore { store in
            let id = try await store.enqueue([NewJob(prompt: "only")])[0]
            let processor = JobProcessor(store: store, handler: Probe(sleep: .milliseconds(1)), configuration: Self.configuration(), logger: Logger(label: "test"))
            try await Self.running(processor) {
                try await Self.waitUntil { try await store.job(id: id)?.status == .completed }
                // The recorder finishes a written batch while the next write is in flight, or at
                // once when there is none: the job must not wait for another outcome.
                try await Self.waitUntil(timeout: .seconds(2)) { processor.runningJobCount == 0 }
            }
        }
    }

    /// Every idle worker hears every insert, and only one gets each job; here every wake-up finds
    /// nothing, as for a worker that other workers keep beating to new jobs.
    @Test("a worker whose claims after wake-ups keep finding nothing backs off, up to 32 ms between claims")
    func notificationBackoff() async throws {
        try await withTemporarySQLiteStore { sqlite in
            let claims = Mutex(0)
            let store = InstrumentedJobStore(sqlite, afterClaim: { _ in claims.withLock { $0 += 1 } })
            let processor = JobProcessor(
                store: store, handler: Probe(sleep: .zero), configuration: Self.configuration(maxConcurrent: 4, poll: .seconds(30)),
                logger: Logger(label: "test"))
            try await Self.running(processor) {
                // The claim at start finds the queue empty; from then on the loop waits for wake-ups.
                try await Self.waitUntil { claims.withLock { $0 } >= 1 }
                claims.withLock { $0 = 0 }
                let clock = ContinuousClock()
                let start = clock.now
                for _ in 0..<300 {
                    processor.notifyJobsAvailable()
                    try await Task.sleep(for: .milliseconds(1))
                }
                let elapsed = clock.now - start
                let seen = claims.withLock { $0 }
                #expect(seen > 0)
                // Without the backoff: about one claim per wake-up (300). With it: a few while it
                // doubles from 1 ms, then at most one per 32 ms (the bound allows twice that).
                #expect(Double(seen) < elapsed / .milliseconds(16) + 10, "\(seen) claims in \(elapsed)")
            }
        }
    }

    @Test("shutdown waits for jobs that finish within the timeout")
    func shutdownWaits() async throws {
        try await withTemporarySQLiteStore { store in
            let id = try await store.enqueue([NewJob(prompt: "short")])[0]
            let processor = JobProcessor(
                store: store,
                handler: Probe(sleep: .milliseconds(400)),
                configuration: Self.configuration(shutdownTimeout: .seconds(5)),
                logger: Logger(label: "test")
            )
            try await Self.running(processor) {
                try await Self.waitUntil { try await store.job(id: id)?.status == .processing }
            }
            #expect(try await store.job(id: id)?.status == .completed)
        }
    }

    @Test("a job cancelled while it runs is stopped and stays cancelled", arguments: [false, true])
    func cancelRunning(fromAnotherProcess: Bool) async throws {
        try await withTemporarySQLiteStore { store in
            let id = try await store.enqueue([NewJob(prompt: "long")])[0]
            let probe = Probe(sleep: .seconds(60))
            let processor = JobProcessor(store: store, handler: probe, configuration: Self.configuration(lease: .milliseconds(1500)), logger: Logger(label: "test"))
            try await Self.running(processor) {
                try await Self.waitUntil { try await store.job(id: id)?.status == .processing }
                if fromAnotherProcess {
                    // Another connection (as the CLI would be): only the lease renewal can notice.
                    let other = try await SQLiteJobStore.open(path: store.path)
                    _ = try await other.cancel(id: id)
                    try await other.close()
                } else {
                    _ = try await store.cancel(id: id)
                }
                // Within a few lease renewals, and the write of its `cancelled` event; loosely
                // bounded, as the whole suite runs beside it on two cores (alone: 0.3 s).
                try await Self.waitUntil(timeout: .seconds(10)) { processor.runningJobCount == 0 }
                // Its lease is ended once the handler returned (before: the release ran in the
                // job's cancelled task and never reached the store, so the lease, no longer
                // renewed, held a retry and the session's next turn until the rescue).
                try await Self.waitUntil(timeout: .seconds(10)) { try await store.job(id: id)?.lockedBy == nil }
            }
            let job = try #require(try await store.job(id: id))
            #expect(job.status == .cancelled)
            #expect(job.leaseExpiresAt == nil)
            #expect(probe.counts.withLock { $0.running } == 0)
        }
    }

    @Test("cancelling a session's running turn ends its lease when its handler returns: the next turn starts then, not after the lease")
    func cancelRunningTurn() async throws {
        try await withTemporarySQLiteStore { store in
            let session = UUID()
            let ids = try await store.enqueue([NewJob(prompt: "turn 1", sessionID: session), NewJob(prompt: "turn 2", sessionID: session)])
            // The first turn sleeps; the second is quick. A 60 s lease (renewed every 20 s):
            // before, the next turn waited for it to run out and for the rescue.
            let probe = Probe(sleep: .seconds(60), only: "turn 1")
            let processor = JobProcessor(store: store, handler: probe, configuration: Self.configuration(lease: .seconds(60)), logger: Logger(label: "test"))
            try await Self.running(processor) {
                try await Self.waitUntil { try await store.job(id: ids[0])?.status == .processing }
                _ = try await store.cancel(id: ids[0])
                try await Self.waitUntil(timeout: .seconds(15)) { try await store.job(id: ids[1])?.status == .completed }
            }
            let cancelled = try #require(try await store.job(id: ids[0]))
            #expect(cancelled.status == .cancelled)
            #expect(cancelled.lockedBy == nil && cancelled.leaseExpiresAt == nil)
        }
    }

    @Test("a dead worker's job is rescued after its lease and completed by another")
    func rescue() async throws {
        try await withTemporarySQLiteStore { store in
            let id = try await store.enqueue([NewJob(prompt: "orphan")])[0]
            // A worker claims it and dies: nobody renews the lease.
            _ = try await store.claim(queues: ["default"], limit: 1, workerID: "dead", leaseDuration: .milliseconds(300))
            // The live worker's lease is long enough that a loaded machine (the whole suite in
            // parallel) cannot make its own second attempt expire too; the rescue still comes
            // at once (its interval is set short).
            var configuration = Self.configuration(lease: .seconds(5))
            configuration.rescueInterval = .milliseconds(200)
            let processor = JobProcessor(store: store, handler: Probe(sleep: .milliseconds(1)), configuration: configuration, logger: Logger(label: "test"))
            try await Self.running(processor) {
                try await Self.waitUntil { try await store.job(id: id)?.status == .completed }
            }
            let job = try #require(try await store.job(id: id))
            #expect(job.attempts == 2)
        }
    }

    @Test("a long job keeps its lease while it runs")
    func leaseRenewal() async throws {
        try await withTemporarySQLiteStore { store in
            let id = try await store.enqueue([NewJob(prompt: "long")])[0]
            // The job outlives its lease three times over; renewals every third of the lease keep it.
            // (A lease of a few seconds, not less: the suite runs beside CPU-heavy tests.)
            let processor = JobProcessor(store: store, handler: Probe(sleep: .seconds(6)), configuration: Self.configuration(lease: .seconds(2)), logger: Logger(label: "test"))
            // The lease as the claim set it, and the furthest it was seen extended while the job ran.
            var claimedUntil: Date?
            var furthest = Date.distantPast
            try await Self.running(processor) {
                try await Self.waitUntil(timeout: .seconds(20)) {
                    let job = try await store.job(id: id)
                    if let expires = job?.leaseExpiresAt, let started = job?.startedAt {
                        claimedUntil = claimedUntil ?? started.addingTimeInterval(2)
                        furthest = max(furthest, expires)
                    }
                    return job?.status == .completed
                }
            }
            // Renewed: the lease reached well past where the claim set it. (Seen by polling, so
            // a machine slow enough to delay some renewals still shows one of them.)
            let original = try #require(claimedUntil)
            #expect(furthest > original.addingTimeInterval(1), "lease never extended: \(furthest) vs \(original)")
            // Never rescued, not even when a renewal came late on a loaded machine (the worker
            // spares its own running jobs): still on its first attempt.
            #expect(try await store.job(id: id)?.attempts == 1)
        }
    }
}
