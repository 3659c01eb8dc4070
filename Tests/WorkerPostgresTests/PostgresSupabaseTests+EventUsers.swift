import Foundation
import PostgresNIO
import Testing
import WorkerCore
import WorkerTestSupport
@testable import WorkerPostgres

/// Each event carries its job's user (version 10), so that row-level security on the events
/// reads the user's own through an index rather than every user's.
extension PostgresSupabaseTests {
    /// Events of `jobs` whose `user_id` is not `user`.
    static func eventsNotOf(_ user: UUID?, jobs: [UUID], on store: PostgresJobStore) async throws -> Int {
        let list = jobs.map { "'\($0.uuidString.lowercased())'" }.joined(separator: ", ")
        let condition = user.map { "user_id IS DISTINCT FROM '\($0.uuidString.lowercased())'" } ?? "user_id IS NOT NULL"
        let rows = try await TestDatabase.execute("SELECT count(*) FROM \(store.schema.eventsTable) WHERE job_id IN (\(list)) AND \(condition)", on: store)
        return try rows.first?.decode(Int.self) ?? -1
    }

    @Test("the worker writes each event with its job's user (claimed, in batches, ending); a system job's events have none; the migration fills in the events stored before it")
    func eventsCarryTheirUser() async throws {
        try await TestDatabase.withStore { store in
            let user = UUID()
            let ids = try await store.enqueue([NewJob(prompt: "mine", userID: user), NewJob(prompt: "system")])
            let claimed = try await store.claim(queues: ["default"], limit: 10, workerID: "w", leaseDuration: .seconds(30))
            #expect(claimed.count == 2)
            let refused = try await store.appendEvents(claimed.map {
                NewJobEvent(lease: $0.lease, sequence: $0.lastEventSequence + 1, kind: .output, data: #"{"text":"working"}"#)
            })
            #expect(refused.lostLeases.isEmpty && refused.brokenStreams.isEmpty, "\(refused)")
            let written = try await store.record(claimed.map {
                JobCompletion(lease: $0.lease, outcome: .completed(result: "{}"), event: .init(sequence: $0.lastEventSequence + 2, data: #"{"status":"completed"}"#))
            })
            #expect(written == [true, true])
            let events = try await TestDatabase.execute("SELECT count(*) FROM \(store.schema.eventsTable)", on: store).first?.decode(Int.self)
            #expect(events == 6, "claimed, output and completed for each")
            #expect(try await Self.eventsNotOf(user, jobs: [ids[0]], on: store) == 0)
            #expect(try await Self.eventsNotOf(nil, jobs: [ids[1]], on: store) == 0)

            // A table whose events were stored before version 10: the migration fills them in.
            _ = try await TestDatabase.execute("UPDATE \(store.schema.eventsTable) SET user_id = NULL", on: store)
            _ = try await TestDatabase.execute(
                "DELETE FROM \(store.schema.migrationsTable) WHERE table_name = '\(store.schema.tableName)' AND version >= 10", on: store)
            try await MigrationGate.shared.migrate(store)
            #expect(try await Self.eventsNotOf(user, jobs: [ids[0]], on: store) == 0)
            #expect(try await Self.eventsNotOf(nil, jobs: [ids[1]], on: store) == 0)
        }
    }

    @Test("the Supabase setup fills in events stored without their user after it has committed, not under its lock of the jobs table (it read every user's events there, at every re-apply)")
    func setupFillsInOutsideItsLock() async throws {
        let setup = PostgresSchema(schema: "public", table: "coding_jobs").supabaseSetup(maximumPendingJobsPerUser: 10, userQueues: ["default"])
        // Before: the fill-in was one of the setup's statements, run after ENABLE ROW LEVEL SECURITY.
        #expect(!setup.statements.contains { $0.contains("UPDATE") && $0.contains("coding_job_events") && $0.contains("SET user_id = j.user_id") })
        try await TestDatabase.withStore(table: "coding_jobs_\(UUID().uuidString.prefix(6).lowercased())") { store in
            try await Self.prepareSupabase(on: store)
            let user = UUID()
            let id = try await store.enqueue([NewJob(prompt: "mine", userID: user)])[0]
            // An event an older worker stored without the user, before the setup's trigger existed.
            _ = try await TestDatabase.execute(
                "INSERT INTO \(store.schema.eventsTable) (job_id, seq, attempt, kind, data) VALUES ('\(id.uuidString.lowercased())', 1, 1, 'output', '{}')", on: store)
            #expect(try await Self.eventsNotOf(user, jobs: [id], on: store) == 1)
            try await MigrationGate.shared.run { try await store.secureForSupabase(maximumPendingJobsPerUser: 10) }
            #expect(try await Self.eventsNotOf(user, jobs: [id], on: store) == 0)
            try await Self.dropFunctions(of: store)
        }
    }

    @Test("a job given to another user by hand takes its events along: the one it was taken from no longer reads them")
    func eventsFollowTheirJobsUser() async throws {
        try await Self.withSecuredStore { store in
            let names = store.schema.supabaseFunctionNames
            let alice = UUID(), bob = UUID()
            let job = try #require(try Self.ids(try await Self.asClient(alice, on: store, "SELECT id FROM public.\(names.enqueue)('moved')")).first)
            let claimed = try await store.claim(queues: ["default"], limit: 1, workerID: "w", leaseDuration: .seconds(30))
            #expect(claimed.map(\.job.id) == [job])
            let events = store.schema.eventsTable, id = job.uuidString.lowercased()
            func visible(to user: UUID) async throws -> Int {
                try await Self.asClient(user, on: store, "SELECT count(*) FROM \(events) WHERE job_id = '\(id)'").rows.first?.decode(Int.self) ?? -1
            }
            #expect(try await visible(to: alice) == 1, "the claimed event")
            _ = try await TestDatabase.execute("UPDATE \(store.schema.table) SET user_id = '\(bob.uuidString.lowercased())' WHERE id = '\(id)'", on: store)
            #expect(try await visible(to: alice) == 0)
            #expect(try await visible(to: bob) == 1)
            // Events the job writes from then on are the new user's too.
            let written = try await store.record(claimed.map {
                JobCompletion(lease: $0.lease, outcome: .completed(result: "{}"), event: .init(sequence: $0.lastEventSequence + 1, data: #"{"status":"completed"}"#))
            })
            #expect(written == [true])
            #expect(try await visible(to: alice) == 0)
            #expect(try await visible(to: bob) == 2)
            // Taken from every user (a backend's job now): nobody reads them.
            _ = try await TestDatabase.execute("UPDATE \(store.schema.table) SET user_id = NULL WHERE id = '\(id)'", on: store)
            #expect(try await visible(to: bob) == 0)
        }
    }

    @Test("a user's read of the events with no job named goes through the index of their own events, not a scan of everyone's; an event stored without its user (by hand, an older worker) is given it")
    func unfilteredEventReadsUseTheIndex() async throws {
        try await Self.withSecuredStore { store in
            let names = store.schema.supabaseFunctionNames
            let alice = UUID()
            let mine = try #require(try Self.ids(try await Self.asClient(alice, on: store, "SELECT id FROM public.\(names.enqueue)('mine')")).first)
            let jobs = store.schema.table, events = store.schema.eventsTable
            // Many events of 400 other users' jobs, stored as the worker stores them.
            _ = try await TestDatabase.execute(
                "INSERT INTO \(jobs) (prompt, user_id, status) SELECT 'other ' || g, gen_random_uuid(), 'completed' FROM generate_series(1, 400) AS g",
                on: store)
            _ = try await TestDatabase.execute(
                """
                INSERT INTO \(events) (job_id, seq, attempt, kind, data, user_id)
                SELECT j.id, s, 1, 'output', '{"text":"x"}', j.user_id FROM \(jobs) AS j, generate_series(1, 50) AS s WHERE j.prompt LIKE 'other %'
                """, on: store)
            // Alice's, by hand without a user: the trigger gives it hers.
            _ = try await TestDatabase.execute(
                "INSERT INTO \(events) (job_id, seq, attempt, kind, data) SELECT '\(mine.uuidString.lowercased())', s, 1, 'output', '{}' FROM generate_series(1, 3) AS s",
                on: store)
            _ = try await TestDatabase.execute("ANALYZE \(jobs)", on: store)
            _ = try await TestDatabase.execute("ANALYZE \(events)", on: store)

            let read = try await Self.asClient(alice, on: store, "SELECT job_id FROM \(events)")
            #expect(try read.rows.map { try $0.decode(UUID.self) } == [mine, mine, mine], "\(read)")
            let plan = try await Self.asClient(alice, on: store, "EXPLAIN SELECT * FROM \(events) LIMIT 20").rows.map { try $0.decode(String.self) }.joined(separator: "\n")
            #expect(!plan.contains("Seq Scan on \(store.schema.eventsTableName)") && plan.contains("\(store.schema.eventsTableName)_user_idx"), "\(plan)")
            // One job's events, as an app reads them: still by the primary key.
            let one = try await Self.asClient(alice, on: store, "EXPLAIN SELECT * FROM \(events) WHERE job_id = '\(mine.uuidString.lowercased())' AND seq > 1")
                .rows.map { try $0.decode(String.self) }.joined(separator: "\n")
            #expect(!one.contains("Seq Scan"), "\(one)")
        }
    }
}
