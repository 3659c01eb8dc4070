import Foundation
import PostgresNIO
import Testing
import WorkerCore
import WorkerTestSupport
@testable import WorkerPostgres

/// What the session triggers guarantee on PostgreSQL beyond the conformance suite: for rows
/// written by hand, for tables upgraded with turns in them, and against writes that would break
/// the one-active-turn rule.
@Suite("PostgreSQL sessions", .enabled(if: TestDatabase.isAvailable, "needs TEST_DATABASE_URL: run scripts/test"))
struct PostgresSessionTests {
    @Test("turns inserted by hand with only a prompt and a session id run one at a time, in order")
    func handInsertedTurns() async throws {
        try await TestDatabase.withStore { store in
            let session = UUID()
            for turn in 1...3 {
                _ = try await TestDatabase.execute(
                    "INSERT INTO public.\(store.schema.tableName) (prompt, session_id) VALUES ('turn \(turn)', '\(session)')", on: store)
            }
            #expect(try await claimOneByOne(store, claims: 3) == ["turn 1", "turn 2", "turn 3"])
        }
    }

    @Test("rows inserted by hand in one statement get time-ordered ids: jobs are claimed, and a session's turns run, in the order written")
    func handInsertedStatementOrder() async throws {
        try await TestDatabase.withStore { store in
            let table = "public.\(store.schema.tableName)"
            // One statement: every row has the same created_at and run_at, so only the ids order them.
            let values = (1...20).map { "('job \($0)')" }.joined(separator: ", ")
            _ = try await TestDatabase.execute("INSERT INTO \(table) (prompt) VALUES \(values)", on: store)
            let claimed = try await store.claim(queues: ["default"], limit: 50, workerID: "w", leaseDuration: .seconds(30))
            #expect(claimed.map(\.job.prompt) == (1...20).map { "job \($0)" })
            #expect(claimed.allSatisfy { $0.job.id.uuidString.dropFirst(14).first == "7" }, "UUIDv7")
            _ = try await store.record(claimed.map { JobCompletion(lease: $0.lease, outcome: .completed(result: "{}")) })

            let session = UUID()
            let turns = (1...10).map { "('turn \($0)', '\(session)')" }.joined(separator: ", ")
            _ = try await TestDatabase.execute("INSERT INTO \(table) (prompt, session_id) VALUES \(turns)", on: store)
            #expect(try await claimOneByOne(store, claims: 10) == (1...10).map { "turn \($0)" })
        }
    }

    @Test("a waiting turn taken out of its session by hand runs")
    func turnTakenOutOfItsSession() async throws {
        try await TestDatabase.withStore { store in
            let session = UUID()
            let ids = try await store.enqueue([NewJob(prompt: "n1", sessionID: session), NewJob(prompt: "n2", sessionID: session)])
            let running = try await store.claim(queues: ["default"], limit: 10, workerID: "w", leaseDuration: .seconds(30))
            #expect(running.map(\.job.prompt) == ["n1"])
            _ = try await TestDatabase.execute("UPDATE public.\(store.schema.tableName) SET session_id = NULL WHERE id = '\(ids[1])'", on: store)
            let next = try await store.claim(queues: ["default"], limit: 10, workerID: "w", leaseDuration: .seconds(30))
            #expect(next.map(\.job.prompt) == ["n2"], "before, it stayed held for good")
        }
    }

    @Test("a running turn cannot be deleted (its session's next turn would start beside it) until cancelled and stopped")
    func runningTurnNotDeleted() async throws {
        try await TestDatabase.withStore { store in
            let table = "public.\(store.schema.tableName)"
            let session = UUID()
            let ids = try await store.enqueue([NewJob(prompt: "d1", sessionID: session), NewJob(prompt: "d2", sessionID: session)])
            let running = try #require(try await store.claim(queues: ["default"], limit: 10, workerID: "w", leaseDuration: .seconds(30)).first)
            await #expect(throws: (any Error).self) { _ = try await TestDatabase.execute("DELETE FROM \(table) WHERE id = '\(ids[0])'", on: store) }
            #expect(try await store.claim(queues: ["default"], limit: 10, workerID: "w", leaseDuration: .seconds(30)).isEmpty, "d2 still waits")
            _ = try await store.cancel(id: ids[0])
            await #expect(throws: (any Error).self) { _ = try await TestDatabase.execute("DELETE FROM \(table) WHERE id = '\(ids[0])'", on: store) }
            try await store.releaseCancelled([running.lease])
            _ = try await TestDatabase.execute("DELETE FROM \(table) WHERE id = '\(ids[0])'", on: store)
            #expect(try await store.claim(queues: ["default"], limit: 10, workerID: "w", leaseDuration: .seconds(30)).map(\.job.prompt) == ["d2"])
        }
    }

    @Test("the database refuses a second active turn of a session, whoever writes it")
    func secondActiveTurnRefused() async throws {
        try await TestDatabase.withStore { store in
            let session = UUID()
            let ids = try await store.enqueue([NewJob(prompt: "t1", sessionID: session), NewJob(prompt: "t2", sessionID: session)])
            await #expect(throws: (any Error).self) {
                _ = try await TestDatabase.execute(
                    "UPDATE public.\(store.schema.tableName) SET held_by_session = false WHERE id = '\(ids[1])'", on: store)
            }
            let claimed = try await store.claim(queues: ["default"], limit: 10, workerID: "w", leaseDuration: .seconds(30))
            #expect(claimed.map(\.job.id) == [ids[0]])
        }
    }

    @Test("migration: turns queued before the upgrade wait for their session; a session with a running turn lets none through")
    func upgradeWithQueuedTurns() async throws {
        try await TestDatabase.withStore { store in
            let table = "public.\(store.schema.tableName)"
            // Back to schema 2, with the turns an old worker left: two sessions, one running.
            for statement in [
                "DROP TRIGGER \(store.schema.tableName)_session_insert ON \(table)",
                "DROP TRIGGER \(store.schema.tableName)_session_update ON \(table)",
                "DROP TRIGGER \(store.schema.tableName)_session_delete ON \(table)",
                "DROP TRIGGER \(store.schema.tableName)_session_hold_insert ON \(table)",
                "DROP TRIGGER \(store.schema.tableName)_session_hold_update ON \(table)",
                "DROP TRIGGER \(store.schema.tableName)_session_release ON \(table)",
                "DROP INDEX public.\(store.schema.tableName)_session_turn_idx",
                "ALTER TABLE \(table) DROP COLUMN held_by_session, DROP COLUMN blocks_session",
                "DELETE FROM public.worker_schema_migrations WHERE table_name = '\(store.schema.tableName)' AND version >= 3",
            ] {
                _ = try await TestDatabase.execute(statement, on: store)
            }
            let idle = UUID(), busy = UUID()
            _ = try await TestDatabase.execute(
                """
                INSERT INTO \(table) (prompt, session_id, status, created_at) VALUES
                    ('idle 1', '\(idle)', 'pending', now() - interval '3 minutes'),
                    ('idle 2', '\(idle)', 'pending', now() - interval '2 minutes'),
                    ('busy 1', '\(busy)', 'processing', now() - interval '3 minutes'),
                    ('busy 2', '\(busy)', 'pending', now() - interval '2 minutes')
                """,
                on: store
            )
            try await store.migrate()
            let claimed = try await store.claim(queues: ["default"], limit: 10, workerID: "w", leaseDuration: .seconds(30))
            #expect(claimed.map(\.job.prompt) == ["idle 1"])
            let busyTurns = try await store.jobs(matching: JobFilter(session: busy))
            #expect(busyTurns.map(\.heldBySession) == [false, true])
        }
    }

    @Test("a batch of turns locks its sessions' running turns in id order, as outcome writes do: neither waits for the other's rows")
    func enqueueLocksActiveTurnsInIDOrder() async throws {
        try await TestDatabase.withStore { store in
            let table = "public.\(store.schema.tableName)"
            // Two sessions whose running turns lie in id order opposite to the sessions' own
            // order (a batch goes in by session): the second session's turn was enqueued first.
            let sessions = [UUID(), UUID()].sorted { $0.uuidString < $1.uuidString }
            let first = try await store.enqueue([NewJob(prompt: "running", sessionID: sessions[1])])[0]
            let second = try await store.enqueue([NewJob(prompt: "running", sessionID: sessions[0])])[0]
            #expect(try await store.claim(queues: ["default"], limit: 10, workerID: "w", leaseDuration: .seconds(30)).count == 2)
            try #require(first.precedes(second))

            let logger = Logger(label: "test.outcomes")
            try await store.client.withConnection { outcomes in
                // A worker's outcome batch, as the store writes it: its rows locked in id order.
                _ = try await outcomes.query("BEGIN", logger: logger)
                _ = try await outcomes.query(PostgresQuery(unsafeSQL: "SELECT 1 FROM \(table) WHERE id = '\(first)' FOR UPDATE"), logger: logger).collect()
                try await withThrowingTaskGroup(of: Void.self) { tasks in
                    tasks.addTask {
                        _ = try await store.enqueue(sessions.map { NewJob(prompt: "next", sessionID: $0) })
                    }
                    // (Nothing here throws before the ROLLBACK below, which lets the batch go on.)
                    let waiting = await Self.eventually {
                        (try? await TestDatabase.execute(
                            "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO %\(store.schema.tableName)%'", on: store
                        ))?.count == 1
                    }
                    #expect(waiting, "the batch waits for the running turn the outcome batch holds")
                    // The batch took no row before the one it waits for: the outcome batch
                    // locks its next row at once (taken in session order, the batch held it,
                    // and the two waited for each other until PostgreSQL aborted one).
                    await #expect(throws: Never.self) {
                        _ = try await outcomes.query(
                            PostgresQuery(unsafeSQL: "SELECT 1 FROM \(table) WHERE id = '\(second)' FOR UPDATE NOWAIT"), logger: logger).collect()
                    }
                    _ = try await outcomes.query("ROLLBACK", logger: logger)
                    try await tasks.waitForAll()
                }
            }
            for session in sessions {
                let turns = try await store.jobs(matching: JobFilter(session: session))
                #expect(turns.map(\.heldBySession) == [false, true])
            }
        }
    }

    @Test("a producer's open transaction that inserted a turn holds its session's running turn, not the worker's events: a batch of them is written at once")
    func openProducerTransactionLeavesEventsAlone() async throws {
        try await TestDatabase.withStore(statementTimeout: .seconds(5)) { store in
            let table = "public.\(store.schema.tableName)"
            let session = UUID()
            _ = try await store.enqueue([NewJob(prompt: "running turn", sessionID: session), NewJob(prompt: "no session")])
            let running = try await store.claim(queues: ["default"], limit: 10, workerID: "w", leaseDuration: .seconds(30))
            try #require(running.count == 2)
            let logger = Logger(label: "test.producer")
            try await store.client.withConnection { producer in
                // A backend's transaction, still open: its turn waits for the running one, whose
                // row its admission locked.
                _ = try await producer.query("BEGIN", logger: logger)
                do {
                    _ = try await producer.query(
                        PostgresQuery(unsafeSQL: "INSERT INTO \(table) (prompt, session_id) VALUES ('next turn', '\(session)')"), logger: logger)
                    // Both running jobs' events in one batch, as a worker writes them. Before: the
                    // batch waited for the running turn's row until the producer committed (here
                    // until the 5 s statement bound), and every job of the worker with it.
                    let clock = ContinuousClock()
                    let start = clock.now
                    let refused = try await store.appendEvents(running.map { NewJobEvent(lease: $0.lease, sequence: $0.lastEventSequence + 1, kind: .output, data: #"{"text":"x"}"#) })
                    #expect(refused.isEmpty)
                    #expect(clock.now - start < .seconds(2), "\(clock.now - start)")
                    _ = try await producer.query("COMMIT", logger: logger)
                } catch {
                    _ = try? await producer.query("ROLLBACK", logger: logger)
                    throw error
                }
            }
            // The session's order holds: the next turn runs once the running one has ended.
            let turn = try #require(running.first { $0.job.sessionID == session })
            #expect(try await store.claim(queues: ["default"], limit: 10, workerID: "w", leaseDuration: .seconds(30)).isEmpty)
            #expect(try await store.record([JobCompletion(lease: turn.lease, outcome: .completed(result: "{}"))]) == [true])
            let next = try await store.claim(queues: ["default"], limit: 10, workerID: "w", leaseDuration: .seconds(30))
            #expect(next.map(\.job.prompt) == ["next turn"])
        }
    }

    /// Polls `condition` every 20 ms for up to 10 s.
    static func eventually(_ condition: () async -> Bool) async -> Bool {
        for _ in 0..<500 {
            if await condition() { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return false
    }
}
