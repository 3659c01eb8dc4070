import Foundation
import Logging
import PostgresNIO
import Testing
import WorkerCore
import WorkerTestSupport
@testable import WorkerPostgres

/// `worker migrate --supabase` on a plain PostgreSQL 15 set up as Supabase sets one up: the roles
/// `anon`, `authenticated`, `service_role` (which bypasses row-level security), `auth.uid()`
/// reading the request's JWT claims, the `supabase_realtime` publication, and the default grants
/// that give every client role every right on new tables of `public`. Clients act as PostgREST
/// makes them: `SET ROLE authenticated` and the user's claims in `request.jwt.claims`.
@Suite("PostgreSQL: Supabase row-level security", .serialized, .enabled(if: TestDatabase.isAvailable, "needs TEST_DATABASE_URL: run scripts/test"))
struct PostgresSupabaseTests {
    static let logger = Logger(label: "test.supabase")

    /// Whether this test process has set the database up as Supabase does (once is enough).
    actor Prepared {
        var done = false
        func markDone() -> Bool { defer { done = true }; return done }
    }
    static let prepared = Prepared()

    /// What Supabase has in every project's database (idempotent; roles are the cluster's).
    static func prepareSupabase(on store: PostgresJobStore) async throws {
        guard await !prepared.done else { return }
        try await store.client.withTransaction(logger: logger) { connection in
            // The fixture grants on the `public` schema, as other tests do.
            _ = try await connection.query(PostgresQuery(unsafeSQL: sharedPrivilegesLock), logger: logger)
            for statement in [
                """
                DO $$ BEGIN
                    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'anon') THEN CREATE ROLE anon NOLOGIN NOINHERIT; END IF;
                    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'authenticated') THEN CREATE ROLE authenticated NOLOGIN NOINHERIT; END IF;
                    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS; END IF;
                END $$
                """,
                "CREATE SCHEMA IF NOT EXISTS auth",
                // As Supabase defines it.
                """
                CREATE OR REPLACE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $$
                    SELECT nullif(coalesce(current_setting('request.jwt.claim.sub', true),
                        (current_setting('request.jwt.claims', true)::jsonb ->> 'sub')), '')::uuid
                $$
                """,
                "GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role",
                "GRANT EXECUTE ON FUNCTION auth.uid() TO anon, authenticated, service_role",
                "GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role",
                """
                DO $$ BEGIN
                    IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'supabase_realtime') THEN CREATE PUBLICATION supabase_realtime; END IF;
                END $$
                """,
            ] {
                _ = try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
            }
        }
        _ = await prepared.markDone()
    }

    /// A store on a fresh table, Supabase's default grants on it (every right to every client
    /// role, as `ALTER DEFAULT PRIVILEGES` gives in a project), then `worker migrate --supabase`.
    static func withSecuredStore(maximumPending: Int = 10, _ body: (PostgresJobStore) async throws -> Void) async throws {
        try await TestDatabase.withStore(table: "coding_jobs_\(UUID().uuidString.prefix(6).lowercased())") { store in
            try await prepareSupabase(on: store)
            let schema = store.schema
            try await TestDatabase.changeSharedPrivileges(
                ["GRANT ALL ON \(schema.table), \(schema.eventsTable), \(schema.migrationsTable) TO anon, authenticated, service_role"], on: store)
            try await MigrationGate.shared.run { try await store.secureForSupabase(maximumPendingJobsPerUser: maximumPending) }
            do {
                try await body(store)
            } catch {
                try? await dropFunctions(of: store)
                throw error
            }
            try await dropFunctions(of: store)
        }
    }

    static func dropFunctions(of store: PostgresJobStore) async throws {
        let names = store.schema.supabaseFunctionNames
        _ = try await TestDatabase.execute("DROP TYPE IF EXISTS public.\"\(names.row)\" CASCADE", on: store)
    }

    /// What a client of `role` gets for `sql`, as PostgREST runs it: the rows, or the SQLSTATE.
    enum Answer {
        case rows([PostgresRow])
        case error(sqlState: String, message: String)

        /// The rows; an error throws, so that a statement that failed (a typo, a missing
        /// privilege) is never read as a client seeing no rows.
        var rows: [PostgresRow] {
            get throws {
                switch self {
                case .rows(let rows): return rows
                case .error(let state, let message): throw ClientError(sqlState: state, message: message)
                }
            }
        }

        struct ClientError: Error, CustomStringConvertible {
            let sqlState: String
            let message: String
            var description: String { "the client's statement failed (\(sqlState)): \(message)" }
        }
        var sqlState: String? { if case .error(let state, _) = self { state } else { nil } }
    }

    static func asClient(_ user: UUID?, role: String = "authenticated", on store: PostgresJobStore, _ sql: String) async throws -> Answer {
        do {
            return .rows(try await store.client.withTransaction(logger: logger) { connection in
                _ = try await connection.query(PostgresQuery(unsafeSQL: "SET LOCAL ROLE \(role)"), logger: logger)
                let claims = user.map { #"{"sub":"\#($0.uuidString.lowercased())","role":"\#(role)","aud":"authenticated"}"# } ?? #"{"role":"anon"}"#
                _ = try await connection.query("SELECT set_config('request.jwt.claims', \(claims), true)", logger: logger)
                return try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger).collect()
            })
        } catch {
            let server = (error as? PSQLError) ?? ((error as? PostgresTransactionError)?.closureError as? PSQLError)
            guard let server else { throw error }
            return .error(sqlState: server.serverInfo?[.sqlState] ?? "?", message: server.serverInfo?[.message] ?? "\(server)")
        }
    }

    static func ids(_ answer: Answer) throws -> Set<UUID> {
        Set(try answer.rows.map { try $0.decode(UUID.self) })
    }

    @Test("a user reads only their own jobs and their events; anon nothing; the migrations table no client")
    func usersSeeOnlyTheirOwn() async throws {
        try await Self.withSecuredStore { store in
            let names = store.schema.supabaseFunctionNames
            let (alice, bob) = (UUID(), UUID())
            var aliceJobs: Set<UUID> = [], bobJobs: Set<UUID> = []
            for (user, count) in [(alice, 2), (bob, 1)] {
                for turn in 0..<count {
                    let answer = try await Self.asClient(user, on: store, "SELECT id FROM public.\(names.enqueue)('turn \(turn)')")
                    let id = try #require(try Self.ids(answer).first, "\(answer)")
                    if user == alice { aliceJobs.insert(id) } else { bobJobs.insert(id) }
                }
            }
            // A system job (no owner) and the worker's work: every job claimed, events written, completed.
            let system = try await store.enqueue([NewJob(prompt: "system")])[0]
            let claimed = try await store.claim(queues: ["default"], limit: 10, workerID: "w", leaseDuration: .seconds(30))
            #expect(Set(claimed.map(\.job.id)) == aliceJobs.union(bobJobs).union([system]), "the worker (bypassing RLS) claims everyone's jobs")
            #expect(try await store.record(claimed.map { JobCompletion(lease: $0.lease, outcome: .completed(result: "{}")) }) == Array(repeating: true, count: claimed.count))

            let jobsTable = store.schema.table, eventsTable = store.schema.eventsTable
            #expect(try Self.ids(try await Self.asClient(alice, on: store, "SELECT id FROM \(jobsTable)")) == aliceJobs)
            #expect(try Self.ids(try await Self.asClient(bob, on: store, "SELECT id FROM \(jobsTable)")) == bobJobs)
            #expect(try Self.ids(try await Self.asClient(alice, on: store, "SELECT DISTINCT job_id FROM \(eventsTable)")) == aliceJobs)
            let bobsJob = try #require(bobJobs.first)
            #expect(try await Self.asClient(alice, on: store, "SELECT id FROM \(jobsTable) WHERE id = '\(bobsJob)'").rows.isEmpty)
            #expect(try await Self.asClient(alice, on: store, "SELECT seq FROM \(eventsTable) WHERE job_id = '\(bobsJob)'").rows.isEmpty)
            // No user sees a system job; anon cannot read at all; the migrations table is nobody's.
            #expect(try await Self.asClient(alice, on: store, "SELECT id FROM \(jobsTable) WHERE user_id IS NULL").rows.isEmpty)
            #expect(try await Self.asClient(nil, role: "anon", on: store, "SELECT id FROM \(jobsTable)").sqlState == "42501")
            #expect(try await Self.asClient(nil, role: "anon", on: store, "SELECT seq FROM \(eventsTable)").sqlState == "42501")
            #expect(try await Self.asClient(alice, on: store, "SELECT * FROM \(store.schema.migrationsTable)").sqlState == "42501")
            #expect(try await Self.asClient(alice, on: store, "INSERT INTO \(store.schema.migrationsTable) (table_name, version) VALUES ('x', 999)").sqlState == "42501")
            // service_role (the worker's other way in) sees everything.
            #expect(try Self.ids(try await Self.asClient(nil, role: "service_role", on: store, "SELECT id FROM \(jobsTable)")).count == 4)
            // The functions answer a job without the worker's own fields.
            let columns = try await Self.asClient(alice, on: store, "SELECT * FROM public.\(names.enqueue)('x') AS j").rows.first.map { row in
                PostgresRandomAccessRow(row).map(\.columnName)
            } ?? []
            #expect(columns.contains("user_id") && columns.contains("status") && !columns.contains("locked_by") && !columns.contains("lease_expires_at"), "\(columns)")
        }
    }

    @Test("writes only through the functions: direct INSERT, UPDATE, DELETE, TRUNCATE refused; enqueue sets every field itself; cancel and retry touch only the caller's own")
    func writesOnlyThroughFunctions() async throws {
        try await Self.withSecuredStore { store in
            let names = store.schema.supabaseFunctionNames
            let table = store.schema.table
            let (alice, bob) = (UUID(), UUID())
            for sql in [
                "INSERT INTO \(table) (prompt, user_id, status) VALUES ('forged', '\(alice)', 'completed')",
                "UPDATE \(table) SET status = 'completed'",
                "DELETE FROM \(table)",
                "TRUNCATE \(table)",
                "INSERT INTO \(store.schema.eventsTable) (job_id, seq, attempt, kind) VALUES (gen_random_uuid(), 1, 1, 'message')",
            ] {
                #expect(try await Self.asClient(alice, on: store, sql).sqlState == "42501", "\(sql)")
            }
            // No parameter sets the status, the result, the attempts or the owner.
            for forged in ["status => 'completed'", "user_id => '\(bob)'", "attempts => 3", "result => '{}'::jsonb"] {
                #expect(try await Self.asClient(alice, on: store, "SELECT * FROM public.\(names.enqueue)(prompt => 'p', \(forged))").sqlState == "42883", "\(forged)")
            }
            let enqueued = try #require(try await Self.asClient(alice, on: store, """
                SELECT id, status, attempts, result IS NULL, user_id FROM public.\(names.enqueue)('p', NULL, '{"k":1}'::jsonb)
                """).rows.first)
            let (id, status, attempts, noResult, owner) = try enqueued.decode((UUID, String, Int, Bool, UUID).self)
            #expect(status == "pending" && attempts == 0 && noResult && owner == alice)
            // Bounds, each with its own error.
            #expect(try await Self.asClient(alice, on: store, "SELECT * FROM public.\(names.enqueue)('')").sqlState == "22023")
            #expect(try await Self.asClient(alice, on: store, "SELECT * FROM public.\(names.enqueue)('p', NULL, '[1]'::jsonb)").sqlState == "22023")
            #expect(try await Self.asClient(alice, on: store, "SELECT * FROM public.\(names.enqueue)(repeat('x', 300000))").sqlState == "22001")
            #expect(try await Self.asClient(alice, on: store, "SELECT * FROM public.\(names.enqueue)('p', queue => 'no spaces')").sqlState == "22023")
            #expect(try await Self.asClient(nil, on: store, "SELECT * FROM public.\(names.enqueue)('no user')").sqlState == "42501")
            #expect(try await Self.asClient(nil, role: "anon", on: store, "SELECT * FROM public.\(names.enqueue)('anon')").sqlState == "42501")
            // Bob cannot cancel Alice's job, nor learn that it exists; Alice can.
            #expect(try await Self.asClient(bob, on: store, "SELECT * FROM public.\(names.cancel)('\(id)')").sqlState == "P0002")
            #expect(try await store.job(id: id)?.status == .pending)
            #expect(try await Self.asClient(alice, on: store, "SELECT status FROM public.\(names.cancel)('\(id)')").rows.first?.decode(String.self) == "cancelled")
            // Retry: only one's own failed job.
            let failing = try await store.enqueue([NewJob(prompt: "fails", maxAttempts: 1, userID: alice)])[0]
            let claimed = try await store.claim(queues: ["default"], limit: 1, workerID: "w", leaseDuration: .seconds(30))
            #expect(claimed.first?.job.id == failing)
            _ = try await store.record(claimed.map { JobCompletion(lease: $0.lease, outcome: .failed(error: "no")) })
            #expect(try await store.job(id: failing)?.status == .failed)
            #expect(try await Self.asClient(bob, on: store, "SELECT * FROM public.\(names.retry)('\(failing)')").sqlState == "P0002")
            #expect(try await Self.asClient(alice, on: store, "SELECT * FROM public.\(names.retry)('\(id)')").sqlState == "P0002", "a cancelled job is not failed")
            #expect(try await Self.asClient(alice, on: store, "SELECT status FROM public.\(names.retry)('\(failing)')").rows.first?.decode(String.self) == "pending")
        }
    }

    @Test("the pending-jobs cap holds under 20 concurrent enqueues of one user")
    func pendingCap() async throws {
        try await Self.withSecuredStore(maximumPending: 5) { store in
            let names = store.schema.supabaseFunctionNames
            let alice = UUID()
            let answers = try await withThrowingTaskGroup(of: Answer.self) { group in
                for turn in 0..<20 {
                    group.addTask { try await Self.asClient(alice, on: store, "SELECT id FROM public.\(names.enqueue)('turn \(turn)')") }
                }
                return try await group.reduce(into: [Answer]()) { $0.append($1) }
            }
            #expect(answers.filter { $0.sqlState == nil }.count == 5)
            #expect(answers.filter { $0.sqlState == "53400" }.count == 15, "\(answers.compactMap(\.sqlState))")
            #expect(try await store.jobs(matching: JobFilter(status: .pending, user: alice)).count == 5)
            // Another user is not held by Alice's cap.
            #expect(try await Self.asClient(UUID(), on: store, "SELECT id FROM public.\(names.enqueue)('other')").sqlState == nil)
        }
    }

    @Test("the migration is idempotent, adds both tables to supabase_realtime once, and upgrades the seed's table in place: old rows get no owner and still run")
    func seedTableUpgradedInPlace() async throws {
        let table = "coding_jobs_\(UUID().uuidString.prefix(6).lowercased())"
        try await TestDatabase.withStore(table: table, migrate: false) { store in
            try await Self.prepareSupabase(on: store)
            // The seed's shape, with rows, as a Supabase project has it before the worker.
            _ = try await TestDatabase.execute("""
                CREATE TABLE public.\(table) (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), session_id uuid, prompt text NOT NULL,
                    status text NOT NULL DEFAULT 'pending', created_at timestamptz DEFAULT now())
                """, on: store)
            _ = try await TestDatabase.execute("INSERT INTO public.\(table) (prompt) VALUES ('old 1'), ('old 2')", on: store)
            try await store.secureForSupabase(maximumPendingJobsPerUser: 10)
            try await store.secureForSupabase(maximumPendingJobsPerUser: 10)
            let published = try await TestDatabase.execute("""
                SELECT count(*) FROM pg_publication_tables WHERE pubname = 'supabase_realtime' AND tablename IN ('\(table)', '\(JobEvent.tableName(forJobsTable: table))')
                """, on: store)
            #expect(try published.first?.decode(Int.self) == 2)
            let old = try await store.jobs(matching: JobFilter())
            #expect(old.count == 2 && old.allSatisfy { $0.userID == nil })
            #expect(try await Self.asClient(UUID(), on: store, "SELECT id FROM \(store.schema.table)").rows.isEmpty)
            let claimed = try await store.claim(queues: ["default"], limit: 5, workerID: "w", leaseDuration: .seconds(30))
            #expect(claimed.count == 2)
            #expect(try await store.record(claimed.map { JobCompletion(lease: $0.lease, outcome: .completed(result: "{}")) }) == [true, true])
            try await Self.dropFunctions(of: store)
            _ = try await TestDatabase.execute("DROP TABLE IF EXISTS \(store.schema.eventsTable) CASCADE", on: store)
        }
    }

    @Test("a database without Supabase's auth.uid() gets an error naming what is missing, and nothing changes")
    func missingPrerequisites() async throws {
        // auth.uid() out of the way for a moment, inside the suite's schema-change gate: this
        // suite runs one test at a time, but another suite's stores secure themselves meanwhile
        // (PostgresPrivilegeTests), always through the gate, and each securing checks auth.uid().
        // A database of its own was a burst of I/O that stalled the rest of the suite.
        let hidden = "auth_hidden_\(UUID().uuidString.prefix(8).lowercased())"
        try await TestDatabase.withStore(migrate: false) { store in
            try await Self.prepareSupabase(on: store)
            try await MigrationGate.shared.run {
                _ = try await TestDatabase.execute("ALTER SCHEMA auth RENAME TO \(hidden)", on: store)
                do {
                    do {
                        try await store.secureForSupabase(maximumPendingJobsPerUser: 10)
                        Issue.record("secured a database without auth.uid()")
                    } catch JobStoreError.notPermitted(let message) {
                        #expect(message.contains("auth.uid()") && message.contains("without --supabase"), "\(message)")
                    }
                    // Not even the schema's migration ran: the tables it would create, open to the
                    // client roles until secured, do not exist.
                    let created = try await TestDatabase.execute("SELECT to_regclass('\(store.schema.table)') IS NOT NULL", on: store)
                    #expect(try created.first?.decode(Bool.self) == false)
                } catch {
                    _ = try? await TestDatabase.execute("ALTER SCHEMA \(hidden) RENAME TO auth", on: store)
                    throw error
                }
                _ = try await TestDatabase.execute("ALTER SCHEMA \(hidden) RENAME TO auth", on: store)
            }
        }
    }

    /// The queue's semantics with row-level security on (the worker bypasses it as the owner).
    @Test("conformance with row-level security on", arguments: JobStoreConformance.cases)
    func conformanceWithRLS(_ testCase: ConformanceCase) async throws {
        try await TestDatabase.withStore(sessionOnFailure: testCase.sessionOnFailure) { store in
            try await Self.prepareSupabase(on: store)
            // One schema change at a time across the suite (the timing tests beside it starved).
            try await MigrationGate.shared.run { try await store.secureForSupabase(maximumPendingJobsPerUser: 10) }
            try await testCase.run(on: store)
            try await Self.dropFunctions(of: store)
        }
    }
}
