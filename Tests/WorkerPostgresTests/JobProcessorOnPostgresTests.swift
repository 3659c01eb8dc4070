import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Testing
import WorkerCore
@testable import WorkerPostgres

/// The processor against a real PostgreSQL, where inserts wake workers through LISTEN/NOTIFY.
@Suite("JobProcessor on PostgreSQL", .enabled(if: TestDatabase.isAvailable, "run the suite with scripts/test"))
struct JobProcessorOnPostgresTests {
    /// A real store that counts its claims, and those that found no job.
    final class ClaimCountingStore: JobStore {
        struct Counts { var claims = 0, empty = 0 }
        let base: PostgresJobStore
        let counts = Mutex(Counts())

        init(_ base: PostgresJobStore) { self.base = base }

        func claim(queues: [String], limit: Int, workerID: String, leaseDuration: Duration) async throws -> [ClaimedJob] {
            let claimed = try await base.claim(queues: queues, limit: limit, workerID: workerID, leaseDuration: leaseDuration)
            counts.withLock {
                $0.claims += 1
                if claimed.isEmpty { $0.empty += 1 }
            }
            return claimed
        }

        func migrate() async throws { try await base.migrate() }
        func enqueue(_ jobs: [NewJob]) async throws -> [UUID] { try await base.enqueue(jobs) }
        func record(_ completions: [JobCompletion]) async throws -> [Bool] { try await base.record(completions) }
        func renew(_ leases: [Lease], duration: Duration) async throws -> [UUID: LeaseState] { try await base.renew(leases, duration: duration) }
        func rescueExpiredLeases() async throws -> [RescuedJob] { try await base.rescueExpiredLeases() }
        func job(id: UUID) async throws -> Job? { try await base.job(id: id) }
        func jobs(matching filter: JobFilter) async throws -> [Job] { try await base.jobs(matching: filter) }
        func cancel(id: UUID) async throws -> Job { try await base.cancel(id: id) }
        func retry(id: UUID) async throws -> Job { try await base.retry(id: id) }
        func stats(window: Duration?) async throws -> QueueStats { try await base.stats(window: window) }
        func deleteFinished(status: JobStatus, olderThan: Duration, limit: Int) async throws -> Int? {
            try await base.deleteFinished(status: status, olderThan: olderThan, limit: limit)
        }
        func ping() async throws { try await base.ping() }
        func watch(queues: [String], onEvent: @escaping @Sendable (StoreEvent) -> Void) async throws {
            try await base.watch(queues: queues, onEvent: onEvent)
        }
        func dropTable() async throws { try await base.dropTable() }
        func settle() async throws { try await base.settle() }
        func close() async throws { try await base.close() }
    }

    struct Instant: JobHandler {
        func handle(_ job: ClaimedJob, context: JobContext) async throws -> String { "{}" }
    }

    /// Every idle worker hears every insert, and all but one claim in vain. Without a backoff,
    /// four idle workers made about four claims per job inserted one at a time.
    @Test("idle workers that keep losing the race for new jobs claim less often, and every job still runs")
    func notificationBackoff() async throws {
        try await TestDatabase.withStore { base in
            let store = ClaimCountingStore(base)
            var logger = Logger(label: "test")
            logger.logLevel = .warning
            let processors = (0..<4).map { index in
                JobProcessor(
                    store: store,
                    handler: Instant(),
                    configuration: JobProcessorConfiguration(
                        workerID: "idle-\(index)", maxConcurrentJobs: 10, pollInterval: .seconds(30), leaseDuration: .seconds(30)),
                    logger: logger
                )
            }
            let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: processors, logger: logger))
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                // Each processor's first claim (at start) and its LISTEN take a moment.
                try await Task.sleep(for: .milliseconds(500))
                store.counts.withLock { $0 = .init() }
                let jobs = 120
                for _ in 0..<jobs {
                    _ = try await store.enqueue([NewJob(prompt: "one at a time")])
                    try await Task.sleep(for: .milliseconds(5))
                }
                let deadline = ContinuousClock.now + .seconds(20)
                while try await base.stats().completed < jobs, ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(20))
                }
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
                #expect(try await base.stats().completed == jobs)
                let counts = store.counts.withLock { $0 }
                // The race happened (some claims found nothing)...
                #expect(counts.empty > 0, "\(counts)")
                // ...but the losers backed off: well under one claim per worker per job (about two
                // per job here; four without the backoff).
                #expect(counts.claims < jobs * 3, "\(counts) for \(jobs) jobs")
            }
        }
    }
}
