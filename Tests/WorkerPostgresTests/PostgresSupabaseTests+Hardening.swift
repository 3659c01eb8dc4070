import Foundation
import PostgresNIO
import Testing
import WorkerCore
import WorkerTestSupport
@testable import WorkerPostgres

/// What a signed-in user must not get through the functions (a session of another user, past the
/// pending cap by way of retries), and what a worker's start must not do to a project that has
/// the setup already (lock the tables, drop the app's objects).
extension PostgresSupabaseTests {
    @Test("a session is its first job's user's: another user's enqueue into it is refused, also when two users start it at once")
    func sessionsStayTheirUsers() async throws {
        try await Self.withSecuredStore { store in
            let enqueue = store.schema.supabaseFunctionNames.enqueue
            let (alice, bob) = (UUID(), UUID())
            let session = UUID()
            let into: @Sendable (UUID, UUID) async throws -> Answer = { user, session in
                try await Self.asClient(user, on: store, "SELECT id FROM public.\(enqueue)('turn', '\(session)')")
            }
            #expect(try await into(alice, session).sqlState == nil)
            #expect(try await into(bob, session).sqlState == "42501", "Bob's turn would run in Alice's workspace")
            #expect(try await into(alice, session).sqlState == nil, "Alice's next turn")
            // A session the backend started (jobs with no user) is no user's to join.
            let system = UUID()
            _ = try await store.enqueue([NewJob(prompt: "system turn", sessionID: system)])
            #expect(try await into(alice, system).sqlState == "42501")
            // Two users starting one new session at the same instant: one of them gets it.
            let contested = UUID()
            let answers = try await withThrowingTaskGroup(of: (UUID, Answer).self) { group in
                for turn in 0..<10 {
                    let user = turn.isMultiple(of: 2) ? alice : bob
                    group.addTask { (user, try await into(user, contested)) }
                }
                return try await group.reduce(into: [(UUID, Answer)]()) { $0.append($1) }
            }
            let winners = Set(answers.filter { $0.1.sqlState == nil }.map(\.0))
            #expect(winners.count == 1, "\(answers.map { ($0.0 == alice ? "alice" : "bob", $0.1.sqlState ?? "ok") })")
            #expect(answers.allSatisfy { $0.1.sqlState == nil || $0.1.sqlState == "42501" })
            let owners = Set(try await store.jobs(matching: JobFilter(session: contested)).compactMap(\.userID))
            #expect(owners == winners)
        }
    }

    @Test("a user's job goes only to SUPABASE_USER_QUEUES, and never ahead of others: a priority above 0 is refused")
    func queuesAndPriorityOfUsers() async throws {
        try await Self.withSecuredStore { store in
            let enqueue = store.schema.supabaseFunctionNames.enqueue
            let alice = UUID()
            let call = { (arguments: String) async throws -> Answer in
                try await Self.asClient(alice, on: store, "SELECT queue || ' ' || priority FROM public.\(enqueue)('p', \(arguments))")
            }
            // Before, any well-formed queue (one a privileged worker serves) and any priority up to 32767.
            #expect(try await call("queue => 'gpu-with-secrets'").sqlState == "22023")
            #expect(try await call("priority => 1").sqlState == "22023")
            #expect(try await call("priority => 32767").sqlState == "22023")
            #expect(try await call("priority => -5").rows.first?.decode(String.self) == "default -5")
            #expect(try await call("queue => 'default'").sqlState == nil)
            try await store.secureForSupabase(maximumPendingJobsPerUser: 10, userQueues: ["default", "fast"])
            #expect(try await call("queue => 'fast'").rows.first?.decode(String.self) == "fast 0")
            #expect(try await call("queue => 'gpu-with-secrets'").sqlState == "22023")
        }
    }

    @Test("retrying failed jobs counts against the pending cap as enqueuing does")
    func retryWithinPendingCap() async throws {
        try await Self.withSecuredStore(maximumPending: 2) { store in
            let names = store.schema.supabaseFunctionNames
            let alice = UUID()
            var failed: [UUID] = []
            for _ in 0..<2 {
                let id = try await store.enqueue([NewJob(prompt: "fails", maxAttempts: 1, userID: alice)])[0]
                let claimed = try await store.claim(queues: ["default"], limit: 1, workerID: "w", leaseDuration: .seconds(30))
                _ = try await store.record(claimed.map { JobCompletion(lease: $0.lease, outcome: .failed(error: "no")) })
                #expect(try await store.job(id: id)?.status == .failed)
                failed.append(id)
            }
            let pending = try #require(try await Self.asClient(alice, on: store, "SELECT id FROM public.\(names.enqueue)('one')").rows.first?.decode(UUID.self))
            #expect(try await Self.asClient(alice, on: store, "SELECT id FROM public.\(names.retry)('\(failed[0])')").sqlState == nil)
            // Two pending now, the most allowed: the other failed job stays failed.
            #expect(try await Self.asClient(alice, on: store, "SELECT id FROM public.\(names.retry)('\(failed[1])')").sqlState == "53400")
            #expect(try await store.job(id: failed[1])?.status == .failed)
            #expect(try await Self.asClient(alice, on: store, "SELECT id FROM public.\(names.cancel)('\(pending)')").sqlState == nil)
            #expect(try await Self.asClient(alice, on: store, "SELECT status FROM public.\(names.retry)('\(failed[1])')").rows.first?.decode(String.self) == "pending")
        }
    }

    @Test("a user retries only a job an enqueue of theirs could have made: not one a backend put in another queue or at a higher priority for them")
    func retryWithinUserRules() async throws {
        try await Self.withSecuredStore { store in
            let names = store.schema.supabaseFunctionNames
            let alice = UUID()
            var failed: [String: UUID] = [:]
            for (name, job) in [
                ("gpu", NewJob(prompt: "privileged", queue: "gpu", maxAttempts: 1, userID: alice)),
                ("urgent", NewJob(prompt: "ahead", priority: 10, maxAttempts: 1, userID: alice)),
                ("plain", NewJob(prompt: "plain", maxAttempts: 1, userID: alice)),
            ] {
                let id = try await store.enqueue([job])[0]
                let claimed = try await store.claim(queues: [job.queue], limit: 1, workerID: "w", leaseDuration: .seconds(30))
                _ = try await store.record(claimed.map { JobCompletion(lease: $0.lease, outcome: .failed(error: "no")) })
                #expect(try await store.job(id: id)?.status == .failed)
                failed[name] = id
            }
            for name in ["gpu", "urgent"] {
                let answer = try await Self.asClient(alice, on: store, "SELECT id FROM public.\(names.retry)('\(failed[name]!)')")
                #expect(answer.sqlState == "P0002", "\(name): \(answer)")
                #expect(try await store.job(id: failed[name]!)?.status == .failed, "\(name)")
            }
            #expect(try await Self.asClient(alice, on: store, "SELECT status FROM public.\(names.retry)('\(failed["plain"]!)')").rows.first?.decode(String.self) == "pending")
        }
    }

    @Test("applied again (each start with SUPABASE_RLS=true): no table lock while a transaction is open, and the app's objects that use the row type survive; a new cap still applies")
    func appliedAgainInPlace() async throws {
        try await Self.withSecuredStore { store in
            let schema = store.schema
            let names = schema.supabaseFunctionNames
            // An app's function returning the functions' row type (as a view or an RPC of the app
            // would use it).
            let appFunction = "public.app_jobs_\(UUID().uuidString.prefix(6).lowercased())"
            _ = try await TestDatabase.execute("""
                CREATE FUNCTION \(appFunction)() RETURNS SETOF public."\(names.row)" LANGUAGE sql AS 'SELECT NULL::public."\(names.row)" LIMIT 0'
                """, on: store)
            let appFunctionExists = {
                try await TestDatabase.execute("SELECT to_regprocedure('\(appFunction)()') IS NOT NULL", on: store).first?.decode(Bool.self) == true
            }
            // A producer's transaction, open on the jobs table while a worker starts.
            let (release, releasing) = AsyncStream<Void>.makeStream()
            let (held, holding) = AsyncStream<Void>.makeStream()
            struct RolledBack: Error {}
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    do {
                        try await store.client.withTransaction(logger: Self.logger) { connection in
                            _ = try await connection.query(PostgresQuery(unsafeSQL: "INSERT INTO \(schema.table) (prompt) VALUES ('open')"), logger: Self.logger)
                            holding.yield()
                            for await _ in release { break }
                            throw RolledBack()
                        }
                    } catch let error as PostgresTransactionError where error.closureError is RolledBack {}
                }
                for await _ in held { break }
                defer { releasing.yield() }
                // Applied already: returns at once (before, `ALTER TABLE` waited for the open
                // transaction with no time limit, and every claim queued behind it).
                try await withTimeout(.seconds(10), operation: "second secureForSupabase") {
                    try await store.secureForSupabase(maximumPendingJobsPerUser: 10)
                }
                releasing.yield()
                try await group.waitForAll()
            }
            #expect(try await appFunctionExists())
            // Another cap: the functions are made again, the type stays, and so does the app's function.
            try await store.secureForSupabase(maximumPendingJobsPerUser: 1)
            #expect(try await appFunctionExists())
            let alice = UUID()
            #expect(try await Self.asClient(alice, on: store, "SELECT id FROM public.\(names.enqueue)('first')").sqlState == nil)
            #expect(try await Self.asClient(alice, on: store, "SELECT id FROM public.\(names.enqueue)('second')").sqlState == "53400")
            _ = try await TestDatabase.execute("DROP FUNCTION \(appFunction)()", on: store)
        }
    }
}
