import Foundation
import PostgresNIO
import Testing
import WorkerCore
@testable import WorkerPostgres

/// Writes whose transaction does not commit after the server answered the statement: PostgresNIO
/// hands over a statement's rows at its CommandComplete, which comes before the commit. A server
/// stopped in that gap (a chaos run's immediate restart lost job events so) or a commit that
/// fails must never be taken for a write. A deferred constraint trigger makes the commit fail on
/// purpose, after the statement and its rows.
@Suite("PostgreSQL: writes confirmed by their commit", .enabled(if: TestDatabase.isAvailable, "needs TEST_DATABASE_URL: run scripts/test"))
struct PostgresCommitTests {
    /// Runs `body` while a trigger on `table` fails the transaction at commit when `condition`
    /// holds of a new row; the trigger's function is dropped afterwards (the trigger goes with it).
    static func whileFailingAtCommit(
        _ table: String, when condition: String, store: PostgresJobStore, _ body: () async throws -> Void
    ) async throws {
        let name = "fail_at_commit_\(UUID().uuidString.prefix(8).lowercased())"
        _ = try await TestDatabase.execute("""
            CREATE FUNCTION \(name)() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN IF \(condition) THEN RAISE EXCEPTION 'refused at commit'; END IF; RETURN NULL; END $$
            """, on: store)
        _ = try await TestDatabase.execute("""
            CREATE CONSTRAINT TRIGGER \(name) AFTER INSERT ON \(table)
                DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION \(name)();
            """, on: store)
        do {
            try await body()
        } catch {
            _ = try? await TestDatabase.execute("DROP FUNCTION \(name)() CASCADE", on: store)
            throw error
        }
        _ = try await TestDatabase.execute("DROP FUNCTION \(name)() CASCADE", on: store)
    }

    @Test("job events whose transaction fails at commit are reported unwritten (the recorder writes them again), not taken as stored", arguments: [false, true])
    func eventsConfirmedByCommit(transactionPooler: Bool) async throws {
        try await TestDatabase.withStore(transactionPooler: transactionPooler) { store in
            _ = try await store.enqueue([NewJob(prompt: "turn")])
            let claimed = try #require(try await store.claim(queues: ["default"], limit: 1, workerID: "w", leaseDuration: .seconds(30)).first)
            try await Self.whileFailingAtCommit(store.schema.eventsTable, when: "NEW.data ? 'failAtCommit'", store: store) { () async throws in
                let doomed = NewJobEvent(lease: claimed.lease, sequence: claimed.lastEventSequence + 1, kind: .output, data: #"{"failAtCommit":true}"#)
                // Before: the rows came back, the write was taken as done (nothing refused), and the
                // event was not there.
                await #expect(throws: (any Error).self) { try await store.appendEvents([doomed]) }
                #expect(try await store.events(jobID: claimed.job.id, after: claimed.lastEventSequence, limit: 10).isEmpty)

                // A write that commits is answered as before, on a store that goes on working.
                let fine = NewJobEvent(lease: claimed.lease, sequence: claimed.lastEventSequence + 1, kind: .output, data: #"{"text":"ok"}"#)
                #expect(try await store.appendEvents([fine]).isEmpty)
                #expect(try await store.events(jobID: claimed.job.id, after: claimed.lastEventSequence, limit: 10).map(\.data) == [#"{"text": "ok"}"#])
            }
        }
    }

    @Test("an enqueue whose transaction fails at commit is an error, never ids of jobs that do not exist")
    func enqueueConfirmedByCommit() async throws {
        try await TestDatabase.withStore { store in
            try await Self.whileFailingAtCommit(store.schema.table, when: "NEW.prompt = 'doomed'", store: store) { () async throws in
                await #expect(throws: (any Error).self) { _ = try await store.enqueue([NewJob(prompt: "doomed")]) }
                #expect(try await store.stats().pending == 0)
                let ids = try await store.enqueue([NewJob(prompt: "fine")])
                #expect(try await store.job(id: ids[0])?.prompt == "fine")
            }
        }
    }
}
