import Foundation
import Logging
import PostgresNIO
import Synchronization
import Testing
import WorkerCore
import WorkerTestSupport
@testable import WorkerPostgres

@Suite("PostgreSQL driver", .enabled(if: TestDatabase.isAvailable, "needs TEST_DATABASE_URL: run scripts/test"))
struct PostgresJobStoreTests {
    /// Every case with prepared statements (a direct connection), and with unnamed ones as behind
    /// a transaction pooler: the two ways the store runs its claim and record statements. Behind a
    /// pooler there is no LISTEN (the worker polls, as documented), so the watch case runs direct only.
    static let conformanceVariants: [(ConformanceCase, Bool)] =
        JobStoreConformance.cases.map { ($0, false) }
        + JobStoreConformance.cases.filter { $0.name != JobStoreConformance.watchCaseName }.map { ($0, true) }

    @Test("conformance", arguments: conformanceVariants)
    func conformance(_ testCase: ConformanceCase, transactionPooler: Bool) async throws {
        try await TestDatabase.withStore(transactionPooler: transactionPooler, sessionOnFailure: testCase.sessionOnFailure) { store in
            try await testCase.run(on: store)
        }
    }

    /// The plan PostgreSQL uses for `sql` when it runs it as a cached generic plan, as text.
    static func genericPlan(of sql: String, arguments: String, on store: PostgresJobStore) async throws -> String {
        let logger = Logger(label: "test.plan")
        // The setting stays on this connection, whose pool ends with the test.
        let rows = try await store.client.withConnection { connection in
            _ = try await connection.query("SET plan_cache_mode = force_generic_plan", logger: logger)
            _ = try await connection.query(PostgresQuery(unsafeSQL: "PREPARE generic_plan AS " + sql), logger: logger)
            let plan = try await connection.query(PostgresQuery(unsafeSQL: "EXPLAIN EXECUTE generic_plan(\(arguments))"), logger: logger).collect()
            _ = try await connection.query("DEALLOCATE generic_plan", logger: logger)
            return plan
        }
        return try rows.map { try $0.decode(String.self) }.joined(separator: "\n")
    }

    /// PostgreSQL may run a prepared statement with a generic plan, made for unknown parameters
    /// (here: how many rows to claim, which it guesses as a tenth of the table). The claim's first
    /// form (an UPDATE joined to its candidate rows) then scanned the whole table and hash-joined it.
    @Test("the claim's generic plan reaches its rows through the claim index and the primary key, not a table scan")
    func claimGenericPlan() async throws {
        try await TestDatabase.withStore { store in
            // Enough rows that a table scan is no longer the cheapest way to reach a few of them.
            _ = try await TestDatabase.execute(
                "INSERT INTO \(store.schema.table) (prompt) SELECT 'p' || g FROM generate_series(1, 20000) g", on: store)
            _ = try await TestDatabase.execute("ANALYZE \(store.schema.table)", on: store)
            let text = try await Self.genericPlan(of: store.schema.claimStatement.sql, arguments: "'{default}', 10, 'w', 30000", on: store)
            #expect(!text.contains("Seq Scan"), "\(text)")
            #expect(text.contains("_claim_idx"), "\(text)")
            // The jobs table's key (the events table's key shows too: the claimed events' arbiter).
            #expect(text.contains("\(store.schema.tableName)_pkey on \(store.schema.tableName)"), "\(text)")
        }
    }

    /// The same for the outcome write, on a table of finished jobs whose statistics say that
    /// nothing is processing: with the status as a literal, the generic plan walked the partial
    /// lease index (and its dead entries) for every write, 5x slower on a table of a million rows.
    @Test("the outcome writes' generic plans look jobs up by primary key, not through the lease index")
    func recordGenericPlan() async throws {
        try await TestDatabase.withStore { store in
            _ = try await TestDatabase.execute(
                """
                INSERT INTO \(store.schema.table) (prompt, status, completed_at)
                SELECT 'p' || g, 'completed', now() FROM generate_series(1, 20000) g
                """, on: store)
            _ = try await TestDatabase.execute("ANALYZE \(store.schema.table)", on: store)
            // The general write, and the narrower one for a batch of completions.
            for (sql, arguments) in [
                (store.schema.recordStatement.sql, "'{}', '{}', '{}', '{}', '{}', '{}', '{}', 'processing', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}'"),
                (store.schema.completeStatement.sql, "'{}', '{}', '{}', 'w', 'processing', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}'"),
            ] {
                let text = try await Self.genericPlan(of: sql, arguments: arguments, on: store)
                #expect(!text.contains("_lease_idx"), "\(text)")
                #expect(!text.contains("Seq Scan on \(store.schema.tableName)"), "\(text)")
                #expect(text.contains("\(store.schema.tableName)_pkey on \(store.schema.tableName)"), "\(text)")
            }
        }
    }

    @Test("a schema change that breaks the prepared claim fails one call; the next prepares afresh")
    func preparedStatementRecovers() async throws {
        let table = "jobs_prep_\(UUID().uuidString.prefix(6).lowercased())"
        // One connection, so the statement that breaks is the one prepared before.
        try await TestDatabase.withStore(table: table, maximumConnections: 1) { store in
            _ = try await store.enqueue([NewJob(prompt: "one"), NewJob(prompt: "two")])
            let first = try await store.claim(queues: ["default"], limit: 1, workerID: "w", leaseDuration: .seconds(30))
            #expect(first.count == 1)
            // A column the claim returns changes type: PostgreSQL refuses the prepared plan
            // ("cached plan must not change result type") on every connection that prepared it.
            _ = try await TestDatabase.execute("ALTER TABLE public.\(table) ALTER COLUMN priority TYPE bigint", on: store)
            var failures = 0
            var second: [ClaimedJob] = []
            for _ in 0..<3 where second.isEmpty {
                do {
                    second = try await store.claim(queues: ["default"], limit: 1, workerID: "w", leaseDuration: .seconds(30))
                } catch {
                    failures += 1
                    #expect("\(error)".contains("cached plan"), "unexpected error: \(error)")
                }
            }
            #expect(second.map(\.job.prompt) == ["two"])
            #expect(failures == 1, "the first claim after the change fails, the next one prepares afresh")
            let applied = try await store.record(second.map { JobCompletion(lease: $0.lease, outcome: .completed(result: "{}")) })
            #expect(applied == [true])
        }
    }

    /// Columns, indexes, triggers and migration rows: what a second migration must not change.
    static func schemaSnapshot(_ store: PostgresJobStore, table: String) async throws -> [String] {
        let sql = """
            SELECT 'column ' || column_name || ' ' || data_type || ' ' || is_nullable || ' ' || coalesce(column_default, '')
                FROM information_schema.columns WHERE table_schema = 'public' AND table_name = '\(table)'
            UNION ALL SELECT 'index ' || indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = '\(table)'
            UNION ALL SELECT 'trigger ' || tgname FROM pg_trigger WHERE tgrelid = 'public.\(table)'::regclass AND NOT tgisinternal
            UNION ALL SELECT 'migration ' || version FROM public.worker_schema_migrations WHERE table_name = '\(table)'
            ORDER BY 1
            """
        return try await TestDatabase.execute(sql, on: store).map { try $0.decode(String.self) }
    }

    @Test("migration: a fresh database, then a second run changes nothing")
    func migrationIdempotent() async throws {
        let table = "jobs_mig_\(UUID().uuidString.prefix(6).lowercased())"
        try await TestDatabase.withStore(table: table) { store in
            let first = try await Self.schemaSnapshot(store, table: table)
            #expect(first.contains { $0.hasPrefix("column lease_expires_at") })
            #expect(first.contains { $0.contains("\(table)_claim_idx") && $0.contains("WHERE ((status = 'pending'::text) AND (NOT held_by_session))") })
            #expect(first.contains { $0.contains("\(table)_session_turn_idx") && $0.contains("UNIQUE") })
            #expect(first.contains("trigger \(table)_session_update"))
            #expect(first.contains("trigger \(table)_notify"))
            #expect(first.contains("migration 1") && first.contains("migration 2") && first.contains("migration 3"))
            try await store.migrate()
            #expect(try await Self.schemaSnapshot(store, table: table) == first)
        }
    }

    @Test("migration behind a long transaction on the table gives way: claims go on meanwhile, and it completes once the transaction ends")
    func migrationGivesWay() async throws {
        try await TestDatabase.withStore(statementTimeout: .seconds(20)) { store in
            let table = "public.\(store.schema.tableName)"
            _ = try await store.enqueue([NewJob(prompt: "p")])
            // Versions 9 on to apply again (their statements are idempotent; version 9's DDL locks
            // the table). Only version 9's record deleted, the later ones kept the table current
            // and the migration did nothing at all.
            _ = try await TestDatabase.execute(
                "DELETE FROM public.worker_schema_migrations WHERE table_name = '\(store.schema.tableName)' AND version >= 9", on: store)
            try await store.client.withConnection { holder in
                // A long transaction that read the table (a report, a producer's open transaction).
                _ = try await holder.query("BEGIN", logger: Logger(label: "test"))
                _ = try await holder.query(PostgresQuery(unsafeSQL: "SELECT count(*) FROM \(table)"), logger: Logger(label: "test")).collect()
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await store.migrate() }
                    // Once its DDL waits for the table's lock (before, a fixed 500 ms, and a claim
                    // made before the migration got there proved nothing).
                    let waiting = await PostgresSessionTests.eventually {
                        let rows = try? await TestDatabase.execute(
                            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = '\(table)'::regclass", on: store)
                        return ((try? rows?.first?.decode(Int.self)) ?? 0) > 0
                    }
                    #expect(waiting, "the migration never waited for the table's lock")
                    // Before, the claim queued behind the migration's waiting DDL until the long
                    // transaction ended (or its statement bound, 20 s, ran out).
                    let clock = ContinuousClock(), start = clock.now
                    var claimed: [ClaimedJob] = []
                    do {
                        claimed = try await withTimeout(.seconds(25), operation: "claim") {
                            try await store.claim(queues: ["default"], limit: 1, workerID: "w", leaseDuration: .seconds(30))
                        }
                    } catch {
                        Issue.record("the claim did not answer: \(error)")
                    }
                    #expect(claimed.count == 1)
                    #expect(clock.now - start < .seconds(8), "the claim waited \(clock.now - start)")
                    // Whatever happened above, the long transaction ends (or the migration waits for good).
                    if clock.now - start < .seconds(9) { try await Task.sleep(for: .seconds(9) - (clock.now - start)) }
                    _ = try await holder.query("COMMIT", logger: Logger(label: "test"))
                    try await group.waitForAll()
                }
            }
            let versions = try await TestDatabase.execute(
                "SELECT max(version) FROM public.worker_schema_migrations WHERE table_name = '\(store.schema.tableName)'", on: store)
            #expect(try versions.first?.decode(Int.self) == PostgresSchema.version)
        }
    }

    @Test("the worker's connections end a transaction left idle (a worker cut off mid-way) after a minute, instead of holding its locks for TCP keepalive's two hours")
    func idleTransactionsBounded() async throws {
        try await TestDatabase.withStore { store in
            let rows = try await TestDatabase.execute("SELECT current_setting('idle_in_transaction_session_timeout')", on: store)
            #expect(try rows.first?.decode(String.self) == "1min")
        }
    }

    @Test("migration: many workers migrating at once is safe")
    func concurrentMigrations() async throws {
        try await TestDatabase.withStore(migrate: false) { store in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<6 { group.addTask { try await store.migrate() } }
                try await group.waitForAll()
            }
            #expect(try await store.enqueue([NewJob(prompt: "after")]).count == 1)
        }
    }

    /// The original plan's `coding_jobs` table (id, session_id, prompt, status, created_at).
    static func createPlanTable(_ table: String, on store: PostgresJobStore) async throws {
        _ = try await TestDatabase.execute(
            """
            CREATE TABLE public.\(table) (
                id uuid PRIMARY KEY DEFAULT gen_random_uuid(), session_id uuid NOT NULL, prompt text NOT NULL,
                status text NOT NULL DEFAULT 'pending', created_at timestamptz DEFAULT now())
            """,
            on: store
        )
    }

    @Test("migration: a plan-style coding_jobs table with rows is upgraded in place, rows intact")
    func legacyUpgrade() async throws {
        let table = "jobs_legacy_\(UUID().uuidString.prefix(6).lowercased())"
        try await TestDatabase.withStore(table: table, migrate: false) { store in
            try await Self.createPlanTable(table, on: store)
            let session = UUID()
            _ = try await TestDatabase.execute(
                """
                INSERT INTO public.\(table) (session_id, prompt, status, created_at) VALUES
                    ('\(session)', 'old pending', 'pending', now() - interval '1 hour'),
                    ('\(session)', 'old done', 'completed', now() - interval '2 hours')
                """,
                on: store
            )
            try await store.migrate()
            let jobs = try await store.jobs(matching: JobFilter())
            #expect(jobs.count == 2)
            let pending = try #require(jobs.first { $0.prompt == "old pending" })
            #expect(pending.sessionID == session && pending.status == .pending && pending.queue == "default" && pending.payload == "{}")
            #expect(pending.createdAt < Date().addingTimeInterval(-3000))
            #expect(jobs.contains { $0.prompt == "old done" && $0.status == .completed })
            let claimed = try await store.claim(queues: ["default"], limit: 5, workerID: "w", leaseDuration: .seconds(5))
            #expect(claimed.map(\.job.prompt) == ["old pending"])
            // Jobs without a session, the worker's and one written by hand (before: the plan's
            // NOT NULL refused both).
            _ = try await store.enqueue([NewJob(prompt: "no session")])
            _ = try await TestDatabase.execute("INSERT INTO public.\(table) (prompt) VALUES ('by hand')", on: store)
            let sessionless = try await store.jobs(matching: JobFilter()).filter { $0.sessionID == nil }.map(\.prompt).sorted()
            #expect(sessionless == ["by hand", "no session"])
        }
    }

    @Test("migration: a plan-style table's row left `processing` (no lease) is rescued, and its session's next turn then runs")
    func legacyProcessingRow() async throws {
        let table = "jobs_legacy_\(UUID().uuidString.prefix(6).lowercased())"
        try await TestDatabase.withStore(table: table, migrate: false) { store in
            try await Self.createPlanTable(table, on: store)
            let session = UUID()
            _ = try await TestDatabase.execute(
                """
                INSERT INTO public.\(table) (session_id, prompt, status, created_at) VALUES
                    ('\(session)', 'was running', 'processing', now() - interval '2 hours'),
                    ('\(session)', 'next turn', 'pending', now() - interval '1 hour')
                """,
                on: store
            )
            try await store.migrate()
            // Before: never rescued (no lease to run out), and the next turn held for ever.
            let rescued = try await store.rescueExpiredLeases(sparing: [])
            #expect(rescued.count == 1 && rescued.first?.newStatus == .pending, "\(rescued)")
            let first = try await store.claim(queues: ["default"], limit: 5, workerID: "w", leaseDuration: .seconds(5))
            #expect(first.map(\.job.prompt) == ["was running"])
            #expect(try await store.record([JobCompletion(lease: try #require(first.first).lease, outcome: .completed(result: "{}"))]) == [true])
            let second = try await store.claim(queues: ["default"], limit: 5, workerID: "w", leaseDuration: .seconds(5))
            #expect(second.map(\.job.prompt) == ["next turn"])
        }
    }

    @Test("a benchmark's table is dropped with every function and domain its migrations made")
    func benchmarkTableDroppedWhole() async throws {
        let table = "bench_\(UUID().uuidString.prefix(8).lowercased())"
        try await TestDatabase.withStore(table: table) { store in
            let leftovers = """
                SELECT (SELECT count(*) FROM pg_proc WHERE starts_with(proname, '\(table)_'))
                    + (SELECT count(*) FROM pg_type WHERE typtype = 'd' AND starts_with(typname, '\(table)_'))
                """
            #expect(try await TestDatabase.execute(leftovers, on: store).first?.decode(Int.self) ?? 0 > 8)
            try await store.dropTable()
            // Before: the six session functions and the two value domains stayed, every run.
            #expect(try await TestDatabase.execute(leftovers, on: store).first?.decode(Int.self) == 0)
        }
    }

    @Test("a row inserted with nothing but a prompt is a valid pending job, and its NOTIFY wakes a watcher")
    func minimalInsertNotifies() async throws {
        try await TestDatabase.withStore { store in
            let (events, continuation) = AsyncStream.makeStream(of: StoreEvent.self)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await store.watch(queues: ["default"]) { continuation.yield($0) } }
                group.addTask {
                    try? await Task.sleep(for: .seconds(20))
                    continuation.finish()
                }
                var iterator = events.makeAsyncIterator()
                #expect(await iterator.next() == .jobsAvailable)  // sent once listening starts
                _ = try await TestDatabase.execute("INSERT INTO \(store.schema.table) (prompt) VALUES ('from an edge function')", on: store)
                #expect(await iterator.next() == .jobsAvailable)
                group.cancelAll()
            }
            let job = try #require(try await store.jobs(matching: JobFilter()).first)
            #expect(job.prompt == "from an edge function" && job.status == .pending && job.maxAttempts == 3 && job.attempts == 0)
        }
    }

    @Test("a table whose name does not end in s: its events' notifications reach event followers, never the workers' jobs channel")
    func eventsChannelApartFromJobsChannel() async throws {
        // Test tables are named `jobs_<hex>`: their events table, `jobs_<hex>_events`, was named
        // like their jobs channel, and every batch of events woke the idle workers to claim.
        try await TestDatabase.withStore { store in
            #expect(store.schema.eventsChannel != store.schema.channel)
            _ = try await store.enqueue([NewJob(prompt: "turn")])
            let claimed = try #require(try await store.claim(queues: ["default"], limit: 1, workerID: "w", leaseDuration: .seconds(30)).first)
            let heard = Heard()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await store.watch(queues: ["default"]) { event in heard.note(wake: event) } }
                group.addTask { try await store.watchEvents { jobs in heard.note(followed: jobs) } }
                // Both LISTENs are in place once the watcher's first wake-up and a notification
                // on the followers' channel have arrived.
                var sequence = claimed.lastEventSequence
                for _ in 0..<50 where heard.followed.isEmpty || heard.wakes.isEmpty {
                    sequence += 1
                    let event = NewJobEvent(lease: claimed.lease, sequence: sequence, kind: .output, data: #"{"text":"line"}"#)
                    #expect(try await store.appendEvents([event]).isEmpty)
                    try await Task.sleep(for: .milliseconds(100))
                }
                #expect(heard.followed.contains(claimed.job.id), "the event follower heard no event notification")
                #expect(heard.wakes == [.jobsAvailable])  // sent once listening starts
                for _ in 0..<5 {
                    sequence += 1
                    _ = try await store.appendEvents([NewJobEvent(lease: claimed.lease, sequence: sequence, kind: .output, data: #"{"text":"more"}"#)])
                }
                let ending = JobCompletion.FinalEvent(sequence: sequence + 1, data: #"{"status":"completed"}"#)
                #expect(try await store.record([JobCompletion(lease: claimed.lease, outcome: .completed(result: "{}"), event: ending)]) == [true])
                // Batches of events and an outcome later, the jobs channel has said nothing more.
                try await Task.sleep(for: .milliseconds(500))
                #expect(heard.wakes == [.jobsAvailable])
                group.cancelAll()
            }
        }
    }

    /// What the two watchers of ``eventsChannelApartFromJobsChannel()`` heard.
    final class Heard: Sendable {
        private let state = Mutex<(wakes: [StoreEvent], followed: [UUID])>(([], []))
        var wakes: [StoreEvent] { state.withLock { $0.wakes } }
        var followed: [UUID] { state.withLock { $0.followed } }
        func note(wake: StoreEvent) { state.withLock { $0.wakes.append(wake) } }
        func note(followed jobs: [UUID]) { state.withLock { $0.followed += jobs } }
    }

    @Test("the longest table name allowed (43 characters) keeps every name made from it whole, and its jobs run; a longer one is refused")
    func longestTableName() async throws {
        let table = "t\(UUID().uuidString.prefix(8).lowercased())" + String(repeating: "x", count: PostgresJobStore.maximumTableNameLength - 9)
        #expect(table.count == 43)
        try await TestDatabase.withStore(table: table) { store in
            // The longest name made from it, whole (PostgreSQL cuts names at 63 bytes).
            let trigger = try await TestDatabase.execute(
                "SELECT tgname FROM pg_trigger WHERE tgname = '\(table)_session_hold_insert'", on: store)
            #expect(trigger.count == 1)
            // The insert's NOTIFY names a channel PostgreSQL accepts.
            _ = try await store.enqueue([NewJob(prompt: "long name", sessionID: UUID())])
            let claimed = try #require(try await store.claim(queues: ["default"], limit: 1, workerID: "w", leaseDuration: .seconds(30)).first)
            let ending = JobCompletion.FinalEvent(sequence: claimed.lastEventSequence + 1, data: #"{"status":"completed"}"#)
            #expect(try await store.record([JobCompletion(lease: claimed.lease, outcome: .completed(result: "{}"), event: ending)]) == [true])
            #expect(try await store.job(id: claimed.job.id)?.status == .completed)
        }
        #expect(throws: PostgresJobStoreError.self) {
            _ = try PostgresJobStore(url: try PostgresURL(TestDatabase.url!), table: table + "y", logger: Logger(label: "test"))
        }
    }

    @Test("cancelling a job notifies the watcher with its id")
    func cancelNotifies() async throws {
        try await TestDatabase.withStore { store in
            let id = try await store.enqueue([NewJob(prompt: "p")])[0]
            let (events, continuation) = AsyncStream.makeStream(of: StoreEvent.self)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await store.watch(queues: ["default"]) { continuation.yield($0) } }
                // A watcher that never speaks ends the stream (and fails the case) rather than hang the suite.
                group.addTask {
                    try? await Task.sleep(for: .seconds(20))
                    continuation.finish()
                }
                var iterator = events.makeAsyncIterator()
                #expect(await iterator.next() == .jobsAvailable, "the watch's first event: it listens")
                _ = try await store.cancel(id: id)
                var sawCancel = false
                while let event = await iterator.next() {
                    if event == .jobCancelled(id) { sawCancel = true; break }
                }
                #expect(sawCancel)
                group.cancelAll()
            }
        }
    }

    @Test("rows a worker cannot read are failed with a clear error, and claiming goes on")
    func undecodableRows() async throws {
        try await TestDatabase.withStore { store in
            let table = store.schema.table
            // As in a legacy table whose rows predate the status check (kept unvalidated).
            _ = try await TestDatabase.execute("ALTER TABLE \(table) DROP CONSTRAINT \"\(store.schema.tableName)_status_check\"", on: store)
            _ = try await TestDatabase.execute("INSERT INTO \(table) (prompt, status) VALUES ('weird', 'bogus')", on: store)
            _ = try await store.enqueue([NewJob(prompt: "good")])
            // A status the worker does not know is never claimed (only 'pending' is) and stats ignore it.
            let claimed = try await store.claim(queues: ["default"], limit: 5, workerID: "w", leaseDuration: .seconds(5))
            #expect(claimed.map(\.job.prompt) == ["good"])
            // Listing skips the unreadable row instead of failing.
            #expect(try await store.jobs(matching: JobFilter()).map(\.prompt) == ["good"])
        }
    }

    /// The claim stores its `claimed` events without `ON CONFLICT`: their numbers follow the last
    /// event its snapshot shows, and every writer of a job's events holds its lease, which a
    /// pending job has not. Should a number be taken all the same (here: a trigger writes it
    /// first, as a writer racing the claim would), the claim is made again in the form that
    /// skips such events, and its jobs are claimed.
    @Test("a claim whose `claimed` event number is taken meanwhile claims its jobs all the same, the other event kept")
    func claimOverRacingEvent() async throws {
        try await TestDatabase.withStore(maximumConnections: 1) { store in
            let ids = try await store.enqueue([NewJob(prompt: "a"), NewJob(prompt: "b")])
            // Events written by hand for a pending job before the claim are numbered after.
            _ = try await TestDatabase.execute(
                "INSERT INTO \(store.schema.eventsTable) (job_id, seq, attempt, kind, data) VALUES ('\(ids[1].lowercasedText)', 1, 0, 'log', '{\"by\":\"hand\"}')",
                on: store)
            let race = "\"public\".\"\(store.schema.tableName)_race\""
            _ = try await TestDatabase.execute("""
                CREATE FUNCTION \(race)() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    INSERT INTO \(store.schema.eventsTable) (job_id, seq, attempt, kind, data)
                    VALUES (NEW.job_id, NEW.seq, NEW.attempt, 'log', '{"by":"race"}') ON CONFLICT DO NOTHING;
                    RETURN NEW;
                END $$
                """, on: store)
            _ = try await TestDatabase.execute("""
                CREATE TRIGGER race BEFORE INSERT ON \(store.schema.eventsTable) FOR EACH ROW
                WHEN (NEW.job_id = '\(ids[0].lowercasedText)' AND NEW.kind = 'status') EXECUTE FUNCTION \(race)()
                """, on: store)
            let claimed = try await store.claim(queues: ["default"], limit: 2, workerID: "w", leaseDuration: .seconds(30))
            _ = try await TestDatabase.execute("DROP TRIGGER race ON \(store.schema.eventsTable)", on: store)
            _ = try await TestDatabase.execute("DROP FUNCTION \(race)()", on: store)
            #expect(claimed.map(\.lease.jobID) == ids)
            #expect(claimed.map(\.lastEventSequence) == [1, 2])
            let first = try await store.events(jobID: ids[0], after: 0, limit: 10)
            #expect(first.map(\.sequence) == [1] && first[0].data.contains("race"), "\(first)")
            let second = try await store.events(jobID: ids[1], after: 0, limit: 10)
            #expect(second.map(\.sequence) == [1, 2] && second[1].data.contains("claimed"), "\(second)")
            // A unique violation comes from an execution only: the claim keeps its name.
            let prepared = try await TestDatabase.execute("SELECT name FROM pg_prepared_statements", on: store).map { try $0.decode(String.self) }
            #expect(prepared.contains("mobvibe_claim_0") && prepared.contains("mobvibe_claim_again_0"), "\(prepared)")
        }
    }
}
