import Foundation
import Testing
import WorkerCore
import WorkerTestSupport
@testable import WorkerSQLite

@Suite("SQLite driver")
struct SQLiteJobStoreTests {
    @Test("conformance", arguments: JobStoreConformance.cases)
    func conformance(_ testCase: ConformanceCase) async throws {
        try await withTemporarySQLiteStore { store in
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
                try await Task.sleep(for: .milliseconds(400))
                _ = try await other.enqueue([NewJob(prompt: "from elsewhere")])
                var woke = false
                for await event in events where event == .jobsAvailable {
                    woke = true
                    break
                }
                #expect(woke)
                group.cancelAll()
            }
        }
    }

    @Test("opening a file in a missing folder names the folder")
    func missingFolder() async throws {
        await #expect(throws: SQLiteJobStoreError.self) {
            _ = try await SQLiteJobStore.open(path: "/nonexistent-\(UUID())/db.sqlite")
        }
    }
}
