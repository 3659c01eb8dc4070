import Foundation
import Logging
import PostgresNIO
import Testing
import WorkerCore
import WorkerTestSupport
@testable import WorkerPostgres

/// Writes answered and never committed: PostgresNIO hands over a statement's rows at its
/// CommandComplete, which PostgreSQL sends before it commits the implicit transaction. A server
/// stopped in that gap (a chaos run's immediate restart lost job events so) or a commit that
/// fails leaves the worker believing in a batch that is not there. (How PostgresNIO reports a
/// commit that fails after the rows depends on timing: an error to the statement, or to the
/// connection's next one.) These tests make the loss certain: a trigger deletes, once, the event
/// it was just asked to insert, and the statement is answered as usual.
@Suite("PostgreSQL: events answered and not stored", .enabled(if: TestDatabase.isAvailable, "needs TEST_DATABASE_URL: run scripts/test"))
struct PostgresLostCommitTests {
    /// Runs `body` while a trigger on the events table removes the first event inserted for
    /// which `condition` holds (of `NEW`); dropped afterwards.
    static func whileLosingOneEvent(when condition: String, store: PostgresJobStore, _ body: () async throws -> Void) async throws {
        let name = "lose_event_\(UUID().uuidString.prefix(8).lowercased())"
        // A sequence: once, whatever transactions come and go.
        _ = try await TestDatabase.execute("CREATE SEQUENCE \(name)_once", on: store)
        _ = try await TestDatabase.execute("""
            CREATE FUNCTION \(name)() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                -- Nested: AND need not evaluate its left side first.
                IF (\(condition)) THEN
                    IF nextval('\(name)_once') = 1 THEN
                        DELETE FROM \(store.schema.eventsTable) WHERE job_id = NEW.job_id AND seq = NEW.seq;
                    END IF;
                END IF;
                RETURN NULL;
            END $$
            """, on: store)
        _ = try await TestDatabase.execute("""
            CREATE TRIGGER \(name) AFTER INSERT ON \(store.schema.eventsTable) FOR EACH ROW EXECUTE FUNCTION \(name)();
            """, on: store)
        func drop() async throws {
            _ = try await TestDatabase.execute("DROP FUNCTION \(name)() CASCADE", on: store)
            _ = try await TestDatabase.execute("DROP SEQUENCE \(name)_once", on: store)
        }
        do {
            try await body()
        } catch {
            try? await drop()
            throw error
        }
        try await drop()
    }

    @Test("the events after a batch answered and not stored are refused as a broken stream, not stored after the hole; so is the outcome")
    func eventsAfterALostBatch() async throws {
        try await TestDatabase.withStore { store in
            _ = try await store.enqueue([NewJob(prompt: "turn")])
            let claimed = try #require(try await store.claim(queues: ["default"], limit: 1, workerID: "w", leaseDuration: .seconds(30)).first)
            let first = claimed.lastEventSequence
            try await Self.whileLosingOneEvent(when: "NEW.data ? 'doomed'", store: store) { () async throws in
                #expect(try await store.appendEvents([NewJobEvent(lease: claimed.lease, sequence: first + 1, kind: .output, data: #"{"doomed":true}"#)]).isEmpty)
                #expect(try await store.events(jobID: claimed.job.id, after: first, limit: 10).isEmpty)
                // Before: this one was stored, and the job's events had a hole at `first + 1` for good.
                let next = NewJobEvent(lease: claimed.lease, sequence: first + 2, kind: .output, data: #"{"text":"after"}"#)
                #expect(try await store.appendEvents([next]) == RefusedEvents(brokenStreams: [claimed.lease]))
                #expect(try await store.events(jobID: claimed.job.id, after: first, limit: 10).isEmpty)
                #expect(try await store.record([
                    JobCompletion(lease: claimed.lease, outcome: .completed(result: "{}"), event: .init(sequence: first + 3, data: #"{"status":"completed"}"#)),
                ]) == [false])
            }
        }
    }

    /// Prints three lines with pauses between them (so that each goes in a batch of its own),
    /// then completes.
    struct ThreeLines: JobHandler {
        func handle(_ job: ClaimedJob, context: JobContext) async throws -> String {
            for line in ["one", "two", "three"] {
                await context.emit(.output, text: line)
                try await Task.sleep(for: .milliseconds(200))
            }
            return "{}"
        }
    }

    @Test("a worker whose batch of events was lost gives the attempt up; the rescue runs the job again and its events have no gap")
    func workerGivesTheAttemptUp() async throws {
        try await TestDatabase.withStore { store in
            let id = try await store.enqueue([NewJob(prompt: "turn", maxAttempts: 3)])[0]
            let configuration = JobProcessorConfiguration(
                workerID: "lost-commit", maxConcurrentJobs: 4, pollInterval: .milliseconds(100), leaseDuration: .seconds(1))
            let processor = JobProcessor(store: store, handler: ThreeLines(), configuration: configuration, logger: Logger(label: "test"))
            try await Self.whileLosingOneEvent(when: "NEW.data->>'text' = 'two'", store: store) { () async throws in
                try await whileRunning(processor) { () async throws -> Void in
                    try await waitUntil(timeout: .seconds(20)) { try await store.job(id: id)?.status == .completed }
                }
            }
            let events = try await store.events(jobID: id, after: 0, limit: 100)
            #expect(events.map(\.sequence) == Array(1..<Int64(events.count) + 1), "no gap: \(events.map(\.sequence))")
            let texts = events.map { event -> String in
                let object = (try? JSONSerialization.jsonObject(with: Data(event.data.utf8))) as? [String: Any]
                return "\(event.attempt):" + ((object?["text"] as? String) ?? (object?["status"] as? String) ?? "?")
            }
            // Attempt 1 stored what came before the lost batch; attempt 2 (the rescue's) all of it.
            #expect(Array(texts.prefix(2)) == ["1:claimed", "1:one"], "\(texts)")
            #expect(Array(texts.suffix(5)) == ["2:claimed", "2:one", "2:two", "2:three", "2:completed"], "\(texts)")
            #expect(try await store.job(id: id)?.attempts == 2)
        }
    }
}
