import Foundation
import Synchronization
import NIOPosix
import Testing
import WorkerCore
import WorkerTestSupport
@testable import WorkerSQLite

@Suite("SQLite driver")
struct SQLiteJobStoreTests {
    @Test("conformance", arguments: JobStoreConformance.cases)
    func conformance(_ testCase: ConformanceCase) async throws {
        try await withTemporarySQLiteStore(sessionOnFailure: testCase.sessionOnFailure) { store in
            try await testCase.run(on: store)
        }
    }

    @Test("migrate is idempotent and a hand-written insert of only a prompt is a valid job")
    func migrateAndMinimalInsert() async throws {
        try await withTemporarySQLiteStore { store in
            try await store.migrate()
            try await store.migrate()
            try await store.rawExecute("INSERT INTO coding_jobs (prompt) VALUES ('from sql')")
            let jobs = try await store.jobs(matching: JobFilter())
            let job = try #require(jobs.first)
            #expect(job.prompt == "from sql" && job.status == .pending && job.queue == "default" && job.payload == "{}")
            #expect(job.maxAttempts == 3 && abs(job.createdAt.timeIntervalSinceNow) < 5)
            let claimed = try await store.claim(queues: ["default"], limit: 1, workerID: "w", leaseDuration: .seconds(5))
            #expect(claimed.map(\.job.id) == [job.id])
        }
    }

    @Test("a row set `processing` by hand, with no lease, is rescued, and its session's next turn then runs")
    func processingRowWithoutLease() async throws {
        try await withTemporarySQLiteStore { store in
            try await store.migrate()
            let session = UUID().lowercasedText
            try await store.rawExecute("INSERT INTO coding_jobs (prompt, session_id, status) VALUES ('was running', '\(session)', 'processing')")
            try await store.rawExecute("INSERT INTO coding_jobs (prompt, session_id) VALUES ('next turn', '\(session)')")
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

    @Test("a row that cannot be read is failed at claim time, and the claim goes on")
    func undecodableRowIsFailed() async throws {
        try await withTemporarySQLiteStore { store in
            try await store.rawExecute("INSERT INTO coding_jobs (id, prompt, session_id) VALUES ('not-a-uuid', 'bad', NULL)")
            _ = try await store.enqueue([NewJob(prompt: "good")])
            let claimed = try await store.claim(queues: ["default"], limit: 5, workerID: "w", leaseDuration: .seconds(5))
            #expect(claimed.map(\.job.prompt) == ["good"])
            let stats = try await store.stats()
            #expect(stats.failed == 1 && stats.processing == 1)
        }
    }

    @Test("a commit by another connection to the file wakes the watcher")
    func crossProcessWake() async throws {
        try await withTemporarySQLiteStore { store in
            let other = try await SQLiteJobStore.open(path: store.path)
            defer { Task { try? await other.close() } }
            let (events, continuation) = AsyncStream.makeStream(of: StoreEvent.self)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await store.watch(queues: ["default"]) { continuation.yield($0) } }
                // A watcher that never speaks ends the stream (and fails the case) rather than hang the suite.
                group.addTask {
                    try? await Task.sleep(for: .seconds(20))
                    continuation.finish()
                }
                var iterator = events.makeAsyncIterator()
                // The watch's first event says that it watches; only the next one is the other connection's commit.
                #expect(await iterator.next() == .jobsAvailable)
                _ = try await other.enqueue([NewJob(prompt: "from elsewhere")])
                #expect(await iterator.next() == .jobsAvailable)
                group.cancelAll()
            }
        }
    }

    @Test("processes that start at once on a new file (a worker and a CLI command) all open and migrate it: none gives up on the journal mode's lock")
    func concurrentFirstOpen() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("sqlite-open-\(UUID())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        // Each round a new file, opened by four connections at once (SQLite's locks between
        // connections of one process are those between processes), each with a thread of its own
        // as a process has. Before the fix a round of about ten failed with "database is locked"
        // from the journal mode's switch.
        try await withThreadPool(threads: 4) { threads in
            for round in 0..<40 {
                let path = folder.appendingPathComponent("round-\(round).sqlite").path
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for connection in 0..<4 {
                        group.addTask {
                            // Which step of which connection failed, should one (a rare failure in
                            // full runs, "database is locked", that runs alone never show).
                            struct Failed: Error, CustomStringConvertible { var description: String }
                            var step = "open"
                            let started = ContinuousClock.now
                            do {
                                let store = try await SQLiteJobStore.open(path: path, threadPool: threads)
                                do {
                                    step = "migrate"
                                    try await store.migrate()
                                    step = "enqueue"
                                    _ = try await store.enqueue([NewJob(prompt: "at once")])
                                } catch {
                                    try? await store.close()
                                    throw error
                                }
                                try await store.close()
                            } catch {
                                throw Failed(description: "round \(round), connection \(connection), \(step) after \(ContinuousClock.now - started): \(error)")
                            }
                        }
                    }
                    try await group.waitForAll()
                }
                let store = try await SQLiteJobStore.open(path: path)
                let stats = try await store.stats()
                try await store.close()
                #expect(stats.pending == 4, "round \(round)")
            }
        }
    }

    @Test("a migration waits for another process's write lock past the busy timeout (as a first migration holds it on a loaded machine), then finds the schema current or makes it")
    func migrationWaitsForTheWriteLock() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("sqlite-wait-\(UUID())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("jobs.sqlite").path
        let holder = try await SQLiteJobStore.open(path: path)
        let waiter = try await SQLiteJobStore.open(path: path, busyTimeout: .milliseconds(300))
        do {
            // Another process's transaction holds the write lock for three of the waiter's busy timeouts.
            try await holder.rawExecute("BEGIN IMMEDIATE")
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await waiter.migrate() }
                try await Task.sleep(for: .milliseconds(900))
                try await holder.rawExecute("COMMIT")
                // Before, the migration gave up with "database is locked" after 300 ms.
                try await group.waitForAll()
            }
            _ = try await waiter.enqueue([NewJob(prompt: "after the wait")])
            #expect(try await waiter.stats().pending == 1)
        } catch {
            try? await waiter.close()
            try? await holder.close()
            throw error
        }
        try await waiter.close()
        try await holder.close()
    }

    /// A store on a new file (5 s busy timeout) and `holder`, another connection to the file
    /// that plays another process: its own thread, since on the shared pool its COMMIT could
    /// wait behind the very calls that wait for it (each holds a thread while SQLite waits).
    static func withLockHolder(_ body: (_ holder: SQLiteJobStore, _ store: SQLiteJobStore) async throws -> Void) async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("sqlite-holder-\(UUID())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("jobs.sqlite").path
        // Threads of their own, as two processes have: on NIO's shared pool (two threads here),
        // a call busy-waiting for the file's lock and the other tests' calls left the store's
        // reads waiting for a thread.
        let threads = NIOThreadPool(numberOfThreads: 1)
        threads.start()
        let storeThreads = NIOThreadPool(numberOfThreads: 4)
        storeThreads.start()
        let holder = try await SQLiteJobStore.open(path: path, threadPool: threads)
        let store = try await SQLiteJobStore.open(path: path, busyTimeout: .seconds(5), threadPool: storeThreads)
        do {
            try await body(holder, store)
        } catch {
            try? await store.close()
            try? await holder.close()
            try? await threads.shutdownGracefully()
            try? await storeThreads.shutdownGracefully()
            throw error
        }
        try await store.close()
        try await holder.close()
        try await threads.shutdownGracefully()
        try await storeThreads.shutdownGracefully()
    }

    @Test("times written after a wait for another process's write lock are read after it: a claim's and a renewal's lease is whole, a cancel is stamped when it is made")
    func timesAfterTheWriteLock() async throws {
        try await Self.withLockHolder { holder, store in
            try await store.migrate()
            let ids = try await store.enqueue([NewJob(prompt: "claimed"), NewJob(prompt: "cancelled", runAt: Date().addingTimeInterval(3600))])
            // Another process holds the write lock for 1.5 s while each call waits for it.
            func afterAWait<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
                try await holder.rawExecute("BEGIN IMMEDIATE")
                return try await withThrowingTaskGroup(of: T?.self) { group in
                    group.addTask { try await body() }
                    group.addTask {
                        try await Task.sleep(for: .milliseconds(1500))
                        try await holder.rawExecute("COMMIT")
                        return nil
                    }
                    var result: T?
                    for try await value in group { if let value { result = value } }
                    return try #require(result)
                }
            }
            let claimed = try await afterAWait {
                try await store.claim(queues: ["default"], limit: 1, workerID: "w", leaseDuration: .seconds(10))
            }
            // Before: the lease ran from before the wait, 1.5 s of it gone at the claim's return.
            let lease = try #require(claimed.first).lease
            #expect(lease.expiresAt.timeIntervalSinceNow > 9.5, "\(lease.expiresAt.timeIntervalSinceNow) s left of a 10 s lease")
            // A renewal too (before: its expiry was read before the wait for the file's lock).
            let renewed = try await afterAWait { try await store.renew([lease], duration: .seconds(10)) }
            #expect(renewed[lease.jobID] == .held)
            let expiry = try #require(try await store.job(id: lease.jobID)?.leaseExpiresAt)
            #expect(expiry.timeIntervalSinceNow > 9.5, "\(expiry.timeIntervalSinceNow) s left of a renewed 10 s lease")
            let cancelled = try await afterAWait { try await store.cancel(id: ids[1]) }
            #expect(abs(try #require(cancelled.completedAt).timeIntervalSinceNow) < 0.5, "\(String(describing: cancelled.completedAt))")
        }
    }

    @Test("reads go beside the writes: while a renewal waits for another process's write lock, a job, a list, the statistics and events are read at once")
    func readsBesideWrites() async throws {
        try await Self.withLockHolder { holder, store in
            try await store.migrate()
            let id = try #require(try await store.enqueue([NewJob(prompt: "p"), NewJob(prompt: "q")]).first)
            let lease = try #require(try await store.claim(queues: ["default"], limit: 1, workerID: "w", leaseDuration: .seconds(30)).first).lease
            try await holder.rawExecute("BEGIN IMMEDIATE")
            final class Flag: Sendable { let value = Mutex(false) }
            let committed = Flag()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    try await Task.sleep(for: .milliseconds(1500))
                    committed.value.withLock { $0 = true }
                    try await holder.rawExecute("COMMIT")
                }
                // Holds this process's write connection while it waits for the file's lock.
                group.addTask { _ = try await store.renew([lease], duration: .seconds(30)) }
                try await Task.sleep(for: .milliseconds(200))
                // Before: each of these waited behind the renewal, until the other process committed.
                #expect(try await store.job(id: id)?.status == .processing)
                #expect(try await store.jobs(matching: JobFilter(limit: 10)).count == 2)
                #expect(try await store.stats().processing == 1)
                #expect(try await store.events(jobID: id, after: 0, limit: 10).count == 1, "the claimed event")
                // And /ready's ping (before: 503 for as long as another process held the lock).
                try await store.ping()
                #expect(!committed.value.withLock { $0 }, "the reads waited for the other process's commit")
                try await group.waitForAll()
            }
        }
    }

    @Test("a write with no deadline waits the whole busy timeout, whatever a deadline-bound call left on the connection")
    func busyTimeoutRestored() async throws {
        try await Self.withLockHolder { holder, store in
            try await store.migrate()
            let id = try #require(try await store.enqueue([NewJob(prompt: "p")]).first)
            let lease = try #require(try await store.claim(queues: ["default"], limit: 1, workerID: "w", leaseDuration: .seconds(10)).first).lease
            // A renewal with 1.5 s left of its caller's time leaves the connection a busy
            // timeout of 0 s (whole seconds below what is left after the margin).
            _ = try await StoreDeadline.$current.withValue(.now + .milliseconds(1500)) {
                try await store.renew([lease], duration: .seconds(10))
            }
            try await holder.rawExecute("BEGIN IMMEDIATE")
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    try await Task.sleep(for: .milliseconds(500))
                    try await holder.rawExecute("COMMIT")
                }
                // Before: "database is locked" at once.
                _ = try await store.enqueue([NewJob(prompt: "while locked")])
                _ = try await store.cancel(id: id)
                try await group.waitForAll()
            }
            #expect(try await store.stats().pending == 1)
        }
    }

    @Test("opening a file in a missing folder names the folder")
    func missingFolder() async throws {
        await #expect(throws: SQLiteJobStoreError.self) {
            _ = try await SQLiteJobStore.open(path: "/nonexistent-\(UUID())/db.sqlite")
        }
    }

    @Test("a row written by hand with an upper-case id (and session id) runs once and completes")
    func upperCaseIDs() async throws {
        try await withTemporarySQLiteStore { store in
            let id = UUID(), session = UUID()
            // Swift's uuidString is upper case, as a producer in Swift would write it.
            try await store.rawExecute(
                "INSERT INTO coding_jobs (id, prompt, session_id, max_attempts) VALUES ('\(id.uuidString)', 'by hand', '\(session.uuidString)', 1)")
            let claimed = try await store.claim(queues: ["default"], limit: 1, workerID: "w", leaseDuration: .seconds(30))
            let lease = try #require(claimed.first).lease
            #expect(claimed.first?.job.sessionID == session)
            // Before: every renewal and outcome write missed the row, which then ran max_attempts
            // times and ended failed ("lease expired").
            #expect(try await store.renew([lease], duration: .seconds(30)) == [id: .held])
            #expect(try await store.record([JobCompletion(lease: lease, outcome: .completed(result: "{}"))]) == [true])
            let job = try #require(try await store.job(id: id))
            #expect(job.status == .completed && job.attempts == 1)
            // Cancel finds such a row too.
            let other = UUID()
            try await store.rawExecute("INSERT INTO coding_jobs (id, prompt) VALUES ('\(other.uuidString)', 'to cancel')")
            #expect(try await store.cancel(id: other).status == .cancelled)
        }
    }

    @Test("ids written in upper case before the upgrade are made lower case by the migration")
    func upperCaseIDsMigrated() async throws {
        try await withTemporarySQLiteStore { store in
            try await store.rawExecute("DROP TRIGGER coding_jobs_lowercase_ids")
            try await store.rawExecute("DELETE FROM worker_schema_migrations WHERE version >= 2")
            let id = UUID()
            try await store.rawExecute("INSERT INTO coding_jobs (id, prompt) VALUES ('\(id.uuidString)', 'old')")
            try await store.migrate()
            #expect(try await store.job(id: id)?.prompt == "old")
            let claimed = try await store.claim(queues: ["default"], limit: 1, workerID: "w", leaseDuration: .seconds(30))
            #expect(try await store.record(claimed.map { JobCompletion(lease: $0.lease, outcome: .completed(result: "{}")) }) == [true])
        }
    }

    @Test(
        "a hand-written row with a bad queue name or a priority out of range is refused",
        arguments: [
            "(prompt, queue) VALUES ('p', 'bad queue')", "(prompt, queue) VALUES ('p', '')",
            "(prompt, priority) VALUES ('p', 40000)", "(prompt, priority) VALUES ('p', -40000)",
        ]
    )
    func refusedRows(_ values: String) async throws {
        try await withTemporarySQLiteStore { store in
            await #expect(throws: (any Error).self) { try await store.rawExecute("INSERT INTO coding_jobs \(values)") }
            await #expect(throws: (any Error).self) {
                try await store.rawExecute("INSERT INTO coding_jobs (prompt) VALUES ('fine')")
                try await store.rawExecute("UPDATE coding_jobs SET queue = 'no way' WHERE prompt = 'fine'")
            }
            try await store.rawExecute("INSERT INTO coding_jobs (prompt, queue, priority) VALUES ('ok', 'a.b:c-d_e', 32767)")
            #expect(try await store.stats().pending == 2)
        }
    }

    @Test("turns inserted by hand with only a prompt and a session id (upper case too) run one at a time, in order")
    func handInsertedTurns() async throws {
        try await withTemporarySQLiteStore { store in
            let session = UUID()
            for turn in 1...3 {
                let text = turn == 2 ? session.uuidString : session.uuidString.lowercased()
                try await store.rawExecute("INSERT INTO coding_jobs (prompt, session_id, created_at) VALUES ('turn \(turn)', '\(text)', \(turn))")
            }
            #expect(try await claimOneByOne(store, claims: 3) == ["turn 1", "turn 2", "turn 3"])
        }
    }

    @Test("turns inserted by hand in one statement (one created_at) run in the order written")
    func handInsertedStatementOrder() async throws {
        try await withTemporarySQLiteStore { store in
            let session = UUID()
            let turns = (1...12).map { "('turn \($0)', '\(session)')" }.joined(separator: ", ")
            try await store.rawExecute("INSERT INTO coding_jobs (prompt, session_id) VALUES \(turns)")
            #expect(try await claimOneByOne(store, claims: 12) == (1...12).map { "turn \($0)" })
        }
    }

    @Test("a waiting turn taken out of its session by hand runs; one given an upper-case session id still waits its turn and runs")
    func sessionChangedByHand() async throws {
        try await withTemporarySQLiteStore { store in
            let session = UUID(), other = UUID()
            let ids = try await store.enqueue([
                NewJob(prompt: "n1", sessionID: session), NewJob(prompt: "n2", sessionID: session), NewJob(prompt: "o1", sessionID: other),
                NewJob(prompt: "o2", sessionID: other),
            ])
            let running = try await store.claim(queues: ["default"], limit: 10, workerID: "w", leaseDuration: .seconds(30))
            #expect(Set(running.map(\.job.prompt)) == ["n1", "o1"])
            try await store.rawExecute("UPDATE coding_jobs SET session_id = NULL WHERE id = '\(ids[1].lowercasedText)'")
            try await store.rawExecute("UPDATE coding_jobs SET session_id = '\(other.uuidString)' WHERE id = '\(ids[3].lowercasedText)'")
            #expect(try await store.job(id: ids[3])?.sessionID == other)
            let next = try await store.claim(queues: ["default"], limit: 10, workerID: "w", leaseDuration: .seconds(30))
            #expect(next.map(\.job.prompt) == ["n2"], "n2 no longer waits for a session; o2 still waits for o1")
            _ = try await store.record(running.map { JobCompletion(lease: $0.lease, outcome: .completed(result: "{}")) })
            let last = try await store.claim(queues: ["default"], limit: 10, workerID: "w", leaseDuration: .seconds(30))
            #expect(last.map(\.job.prompt) == ["o2"])
        }
    }

    @Test("a running turn can be neither deleted nor moved into a session that has an active turn")
    func runningTurnProtected() async throws {
        try await withTemporarySQLiteStore { store in
            let session = UUID(), other = UUID()
            let ids = try await store.enqueue([
                NewJob(prompt: "d1", sessionID: session), NewJob(prompt: "d2", sessionID: session), NewJob(prompt: "x1", sessionID: other),
            ])
            let running = try await store.claim(queues: ["default"], limit: 10, workerID: "w", leaseDuration: .seconds(30))
            #expect(Set(running.map(\.job.prompt)) == ["d1", "x1"])
            await #expect(throws: (any Error).self) { try await store.rawExecute("DELETE FROM coding_jobs WHERE id = '\(ids[0].lowercasedText)'") }
            await #expect(throws: (any Error).self) {
                try await store.rawExecute("UPDATE coding_jobs SET session_id = '\(session.lowercasedText)' WHERE id = '\(ids[2].lowercasedText)'")
            }
            #expect(try await store.claim(queues: ["default"], limit: 10, workerID: "w", leaseDuration: .seconds(30)).isEmpty, "d2 still waits")
            // Cancelled, it can go once its command has stopped.
            _ = try await store.cancel(id: ids[0])
            await #expect(throws: (any Error).self) { try await store.rawExecute("DELETE FROM coding_jobs WHERE id = '\(ids[0].lowercasedText)'") }
            try await store.releaseCancelled([running.first { $0.job.id == ids[0] }!.lease])
            try await store.rawExecute("DELETE FROM coding_jobs WHERE id = '\(ids[0].lowercasedText)'")
            #expect(try await store.claim(queues: ["default"], limit: 10, workerID: "w", leaseDuration: .seconds(30)).map(\.job.prompt) == ["d2"])
        }
    }

    @Test("retention deletes a finished job with more events than one statement deletes, every one of them, and nothing else")
    func retentionOfManyEvents() async throws {
        try await withTemporarySQLiteStore { store in
            let ids = try await store.enqueue([NewJob(prompt: "chatty"), NewJob(prompt: "recent")])
            let claimed = try await store.claim(queues: ["default"], limit: 2, workerID: "w", leaseDuration: .seconds(30))
            #expect(try await store.record(claimed.map { JobCompletion(lease: $0.lease, outcome: .completed(result: "{}")) }) == [true, true])
            let old = ids[0].lowercasedText
            try await store.rawExecute("""
                WITH RECURSIVE n(i) AS (SELECT 1000 UNION ALL SELECT i + 1 FROM n WHERE i < 13000)
                INSERT INTO coding_job_events (job_id, seq, attempt, kind, data) SELECT '\(old)', i, 1, 'output', '{}' FROM n
                """)
            try await store.rawExecute("UPDATE coding_jobs SET completed_at = completed_at - 864000000 WHERE id = '\(old)'")
            let recentEvents = try await store.events(jobID: ids[1], after: 0, limit: 100).count
            #expect(try await store.deleteFinished(status: .completed, olderThan: .seconds(7 * 86_400), limit: 1_000) == 1)
            #expect(try await store.job(id: ids[0]) == nil)
            #expect(try await store.events(jobID: ids[0], after: 0, limit: 10).isEmpty)
            #expect(try await store.job(id: ids[1]) != nil)
            #expect(try await store.events(jobID: ids[1], after: 0, limit: 100).count == recentEvents)
        }
    }

    @Test("retention deletes a job and its events together: no reader ever sees a job kept with part of its events gone")
    func retentionTakesEventsWithTheirJob() async throws {
        try await withTemporarySQLiteStore { store in try await withThreadPool(threads: 1) { threads in
            let ids = try await store.enqueue([NewJob(prompt: "chatty")])
            let claimed = try await store.claim(queues: ["default"], limit: 1, workerID: "w", leaseDuration: .seconds(30))
            #expect(try await store.record(claimed.map { JobCompletion(lease: $0.lease, outcome: .completed(result: "{}")) }) == [true])
            let id = ids[0].lowercasedText
            try await store.rawExecute("""
                WITH RECURSIVE n(i) AS (SELECT 1000 UNION ALL SELECT i + 1 FROM n WHERE i < 40000)
                INSERT INTO coding_job_events (job_id, seq, attempt, kind, data) SELECT '\(id)', i, 1, 'output', '{}' FROM n
                """)
            try await store.rawExecute("UPDATE coding_jobs SET completed_at = completed_at - 864000000 WHERE id = '\(id)'")
            let total = try await store.events(jobID: ids[0], after: 0, limit: 100_000, maxBytes: 1 << 30).count
            // Another process reading the job and its events in one snapshot, again and again.
            let reader = try await SQLiteJobStore.open(path: store.path, threadPool: threads)
            let retention = Task { try await store.deleteFinished(status: .completed, olderThan: .seconds(7 * 86_400), limit: 1_000) }
            var seen: [(jobs: Int, events: Int)] = []
            do {
                while true {
                    let row = try await reader.connection.query(
                        "SELECT (SELECT COUNT(*) FROM coding_jobs WHERE id = ?1) AS jobs, (SELECT COUNT(*) FROM coding_job_events WHERE job_id = ?1) AS events",
                        [.text(id)]
                    ).first
                    let state = (jobs: Int(row?.column("jobs")?.integer ?? -1), events: Int(row?.column("events")?.integer ?? -1))
                    seen.append(state)
                    if state.jobs == 0 { break }
                }
            } catch {
                try? await reader.close()
                throw error
            }
            try await reader.close()
            #expect(try await retention.value == 1)
            // Before: the events went in statements of 5,000 before their job, each seen alone.
            let partial = seen.filter { $0.jobs == 1 && $0.events != total }
            #expect(partial.count == 0, "\(partial.count) of \(seen.count) reads saw the job with \(partial.first?.events ?? 0) of its \(total) events")
            #expect(seen.last.map { $0.jobs == 0 && $0.events == 0 } == true)
        } }
    }

    @Test("a call cancelled inside its transaction (given up on by the worker) rolls it back, and the store's next writes work")
    func cancelledInsideTransaction() async throws {
        try await withTemporarySQLiteStore { store in try await withThreadPool(threads: 1) { threads in
            // Another process: threads of its own (on NIO's shared pool, behind the other tests'
            // calls, its probes were too slow to see the batch's transaction open).
            let other = try await SQLiteJobStore.open(path: store.path, busyTimeout: .zero, threadPool: threads)
            do {
                try await Self.cancelInsideTransaction(store, other: other)
            } catch {
                try? await other.close()
                throw error
            }
            try await other.close()
        } }
    }

    static func cancelInsideTransaction(_ store: SQLiteJobStore, other: SQLiteJobStore) async throws {
        // A batch of dozens of statements in one transaction, cancelled once the
        // transaction is open: when another connection can no longer take the write lock.
        let batch = (0..<20_000).map { NewJob(prompt: "batch \($0)") }
        let call = Task { try await store.enqueue(batch) }
        var inside = false
        for _ in 0..<10_000 where !inside {
            do {
                _ = try await other.connection.query("BEGIN IMMEDIATE", [])
                _ = try await other.connection.query("ROLLBACK", [])
                try await Task.sleep(for: .milliseconds(1))
            } catch {
                inside = true
            }
        }
        call.cancel()
        try #require(inside, "the batch's transaction was never seen open")
        guard case .failure = await call.result else {
            Issue.record("the batch finished before it was cancelled")
            return
        }
        // Before, the rollback was refused like the cancelled statements, and this failed:
        // "cannot start a transaction within a transaction".
        let next = try await store.enqueue([NewJob(prompt: "after")])
        #expect(try await store.job(id: next[0])?.status == .pending)
        // All or nothing: no row of the interrupted batch stayed.
        let stats = try await store.stats()
        #expect(stats.pending == 1, "pending \(stats.pending)")
    }

    @Test("the window's mean and 95th percentile of run time, computed by SQLite, are those of the jobs completed in it")
    func windowFigures() async throws {
        try await Self.withLockHolder { holder, store in
            try await store.migrate()
            _ = try await store.enqueue((1...40).map { NewJob(prompt: "d\($0)") })
            // Durations of 1..20 s completed a minute ago, and 20 more completed a day ago (outside).
            try await holder.rawExecute("""
                UPDATE coding_jobs SET status = 'completed', completed_at = CAST(strftime('%s','now') AS INTEGER) * 1000 - 60000,
                    started_at = CAST(strftime('%s','now') AS INTEGER) * 1000 - 60000 - 1000 * (SELECT COUNT(*) FROM coding_jobs AS o WHERE o.id <= coding_jobs.id)
                WHERE prompt IN (\((1...20).map { "'d\($0)'" }.joined(separator: ",")))
                """)
            try await holder.rawExecute("""
                UPDATE coding_jobs SET status = 'completed', completed_at = CAST(strftime('%s','now') AS INTEGER) * 1000 - 86400000,
                    started_at = CAST(strftime('%s','now') AS INTEGER) * 1000 - 86400000 - 500000
                WHERE status = 'pending'
                """)
            let stats = try await store.stats(window: .seconds(3_600))
            #expect(stats.completed == 40 && stats.completedInWindow == 20)
            #expect(stats.meanDurationSeconds == 10.5)
            // Rank ceil(0.95 x 20) = 19 of the sorted durations.
            #expect(stats.p95DurationSeconds == 19)
            let empty = try await store.stats(window: .seconds(1))
            #expect(empty.completedInWindow == 0 && empty.meanDurationSeconds == nil && empty.p95DurationSeconds == nil)
        }
    }
}
