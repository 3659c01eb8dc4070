import Foundation
import Logging
import PostgresNIO
import Synchronization
import Testing
import WorkerCore
import WorkerTestSupport
@testable import WorkerPostgres

/// Outcomes PostgreSQL refuses for their values (a NUL byte in `text`, `\u0000` in `jsonb`):
/// one such outcome must never hold back the outcomes written with it.
@Suite("PostgreSQL: refused outcomes", .enabled(if: TestDatabase.isAvailable, "needs TEST_DATABASE_URL: run scripts/test"))
struct PostgresOutcomeRefusalTests {
    /// Completes jobs at once; the prompt says how: `nul-result` returns JSON holding `\u0000`,
    /// `nul-error` fails with a NUL byte in its message, anything else returns `{"ok": prompt}`.
    struct Handler: JobHandler {
        struct Failure: Error, CustomStringConvertible { var description: String }

        func handle(_ job: ClaimedJob, context: JobContext) async throws -> String {
            switch job.job.prompt {
            case "nul-result": return #"{"stdout":"a\u0000b","k\u0000":1}"#
            case "nul-error": throw Failure(description: "bad\u{0}byte")
            default: return #"{"ok":"\#(job.job.prompt)"}"#
            }
        }
    }

    @Test("a batch with refused values is split: every other job is recorded, the refused outcomes are stored without them; no new prepared statements")
    func poisonOutcomeIsIsolated() async throws {
        // Two connections (one of them listens while the processor runs), so that the prepared
        // statements of both can be read afterwards: pg_prepared_statements shows one connection's.
        try await TestDatabase.withStore(maximumConnections: 2) { store in
            var jobs = (0..<30).map { NewJob(prompt: "good \($0)", maxAttempts: 2) }
            jobs.insert(NewJob(prompt: "nul-result"), at: 7)
            jobs.insert(NewJob(prompt: "nul-error", maxAttempts: 2), at: 19)
            let ids = try await store.enqueue(jobs)
            var configuration = JobProcessorConfiguration(
                workerID: "poison", maxConcurrentJobs: 40, pollInterval: .milliseconds(100), leaseDuration: .seconds(30),
                retryPolicy: RetryPolicy(base: .milliseconds(10), maximum: .milliseconds(10), jitter: 0))
            configuration.outcomeBatchSize = 64
            let processor = JobProcessor(store: store, handler: Handler(), configuration: configuration, logger: Logger(label: "test"))
            try await whileRunning(processor) {
                // Before: the refused batch was retried forever and every job stayed `processing`.
                try await waitUntil(timeout: .seconds(20)) {
                    let stats = try await store.stats()
                    return stats.completed == 31 && stats.failed == 1
                }
            }
            let poisoned = try #require(try await store.job(id: ids[7]))
            #expect(poisoned.status == .completed)
            let result = try #require(poisoned.result)
            #expect(!result.contains("\\u0000"))
            let object = try #require(try JSONSerialization.jsonObject(with: Data(result.utf8)) as? [String: Any])
            #expect(object["stdout"] as? String == "ab" && object["k"] as? Int == 1)
            let failing = try #require(try await store.job(id: ids[19]))
            #expect(failing.status == .failed && failing.attempts == 2 && failing.lastError == "badbyte")
            let good = try #require(try await store.job(id: ids[0]))
            #expect(good.status == .completed && good.result?.contains("good 0") == true)

            // Retries of one execution (a refused value) must not prepare the statements again
            // under new names: at most one of each of the five hot statements per connection
            // (enqueue, claim, record, complete, append events).
            @Sendable func preparedOnOneConnection() async throws -> [String] {
                try await store.client.withConnection { connection in
                    // Held a moment, so that the two calls get the two connections.
                    try await Task.sleep(for: .milliseconds(200))
                    return try await connection.query("SELECT name FROM pg_prepared_statements", logger: Logger(label: "test")).collect()
                }.map { try $0.decode(String.self) }
            }
            async let first = preparedOnOneConnection()
            async let second = preparedOnOneConnection()
            for prepared in [try await first, try await second] {
                #expect(prepared.count <= 5, "\(prepared)")
                #expect(prepared.allSatisfy { $0.hasSuffix("_0") }, "\(prepared)")
            }
        }
    }

    @Test("a refused value is reported as such (SQLSTATE 22), a timeout or lost connection not")
    func refusalIsClassified() async throws {
        try await TestDatabase.withStore { store in
            _ = try await store.enqueue([NewJob(prompt: "p")])
            let claimed = try await store.claim(queues: ["default"], limit: 1, workerID: "w", leaseDuration: .seconds(30))
            let lease = try #require(claimed.first).lease
            await #expect(throws: JobStoreError.self) {
                try await store.record([JobCompletion(lease: lease, outcome: .failed(error: "x\u{0}y"))])
            }
            do {
                _ = try await store.record([JobCompletion(lease: lease, outcome: .completed(result: #"{"a":"\u0000"}"#))])
                Issue.record("PostgreSQL took \\u0000 in jsonb")
            } catch JobStoreError.valueRejected(let message) {
                #expect(message.contains("22P05"), "\(message)")
            }
            #expect(try await store.record([JobCompletion(lease: lease, outcome: .completed(result: "{}"))]) == [true])
        }
    }

    @Test("errors that cannot come from a statement's preparation keep its prepared name: a call never sent, a connection lost or abandoned, a deadlock")
    func preparedNameKept() async throws {
        #expect(!PostgresJobStore.mayBreakPreparedStatement(TimeoutError(operation: "claim", timeout: .seconds(1))))
        #expect(!PostgresJobStore.mayBreakPreparedStatement(CancellationError()))
        // Calls given up on before they were sent make nothing prepare again.
        try await TestDatabase.withStore { store in
            _ = try await store.enqueue([NewJob(prompt: "p")])
            for _ in 0..<3 {
                await #expect(throws: (any Error).self) {
                    try await withTimeout(.seconds(6), operation: "claim") {
                        try await StoreDeadline.$current.withValue(ContinuousClock.now + .milliseconds(10)) {
                            _ = try await store.claim(queues: ["default"], limit: 1, workerID: "w", leaseDuration: .seconds(30))
                        }
                    }
                }
            }
            #expect(try await store.claim(queues: ["default"], limit: 1, workerID: "w", leaseDuration: .seconds(30)).count == 1)
            #expect(store.preparedGeneration.load(ordering: .relaxed) == 0)
        }
    }

    /// The completion statement stores its ending events without `ON CONFLICT` (its cost); an
    /// ending event whose number is taken already (written by hand) makes it fail, and the batch
    /// is then written by the general statement, which skips that event.
    @Test("a completion whose ending event is stored already is recorded all the same, the stored event kept, no statement prepared again")
    func endingEventStoredAlready() async throws {
        try await TestDatabase.withStore(maximumConnections: 1) { store in
            _ = try await store.enqueue([NewJob(prompt: "a"), NewJob(prompt: "b")])
            let claimed = try await store.claim(queues: ["default"], limit: 2, workerID: "w", leaseDuration: .seconds(30))
            #expect(claimed.count == 2)
            let taken = try #require(claimed.first)
            let next = taken.lastEventSequence + 1
            _ = try await TestDatabase.execute(
                "INSERT INTO \(store.schema.eventsTable) (job_id, seq, attempt, kind, data) VALUES ('\(taken.lease.jobID.lowercasedText)', \(next), 1, 'log', '{\"by\":\"hand\"}')",
                on: store)
            let completions = claimed.map { job in
                JobCompletion(
                    lease: job.lease, outcome: .completed(result: #"{"ok":true}"#),
                    event: .init(sequence: job.lastEventSequence + 1, data: #"{"status":"completed"}"#))
            }
            #expect(try await store.record(completions) == [true, true])
            for job in claimed {
                #expect(try await store.job(id: job.lease.jobID)?.status == .completed)
            }
            let events = try await store.events(jobID: taken.lease.jobID, after: 0, limit: 10)
            #expect(events.map(\.sequence) == [1, 2], "\(events)")
            #expect(events.last?.data.contains("hand") == true, "\(events)")
            let other = try await store.events(jobID: claimed[1].lease.jobID, after: 0, limit: 10)
            #expect(other.last?.data.contains("completed") == true, "\(other)")
            // A unique violation comes from an execution only: the statements keep their names.
            let prepared = try await TestDatabase.execute("SELECT name FROM pg_prepared_statements", on: store).map { try $0.decode(String.self) }
            #expect(prepared.allSatisfy { $0.hasSuffix("_0") }, "\(prepared)")
        }
    }
}
