import Foundation
import Testing

/// Real `worker` processes against a real PostgreSQL.
@Suite("worker run on PostgreSQL", .serialized, .enabled(if: TestPostgres.isAvailable, "needs TEST_DATABASE_URL: run scripts/test"))
struct WorkerPostgresRunTests {
    static func environment(table: String, port: Int, _ extra: [String: String] = [:]) -> [String: String] {
        var environment = [
            "DATABASE_URL": TestPostgres.url!, "JOBS_TABLE": table, "JOB_HANDLER": "echo", "LOG_FORMAT": "json",
            "HEALTH_CHECK_PORT": "\(port)", "MONITOR_INTERVAL_MS": "60000",
        ]
        environment.merge(extra) { $1 }
        return environment
    }

    static func count(_ table: String, _ condition: String = "true") async throws -> Int {
        Int(try await TestPostgres.sql("SELECT count(*) FROM public.\(table) WHERE \(condition)")) ?? -1
    }

    @Test("three worker processes, 5,000 jobs: every job completed, each executed exactly once")
    func threeWorkers() async throws {
        let folder = try TemporaryDirectory()
        let table = TestPostgres.freshTable()
        let ports = try (0..<3).map { _ in try freePort() }
        let migrate = try await WorkerProcess.command(["migrate"], environment: Self.environment(table: table, port: ports[0]), directory: folder.url)
        #expect(migrate.status == 0)
        let workers = try ports.map { port in
            try WorkerProcess(environment: Self.environment(table: table, port: port, ["MAX_CONCURRENT_JOBS": "8"]), directory: folder.url)
        }
        defer { workers.forEach { $0.kill9() } }
        for port in ports {
            #expect(try await eventually("health") { try await http(port: port, path: "/health").status == 200 })
        }
        let lines = (0..<5000).map { #"{"prompt":"job \#($0)"}"# }.joined(separator: "\n")
        let enqueue = try await WorkerProcess.command(["enqueue", "--jsonl", "-"], environment: Self.environment(table: table, port: ports[0]), directory: folder.url, stdin: Data(lines.utf8))
        #expect(enqueue.stdout.contains("Enqueued 5000 jobs"))
        #expect(try await eventually("all completed", timeout: .seconds(120)) { try await Self.count(table, "status = 'completed'") == 5000 })
        for worker in workers { worker.send(SIGTERM) }
        for worker in workers { #expect(await worker.waitForExit(timeout: .seconds(20)) == 0) }

        // Every execution logs "Processing job" with its job id: count them across the three workers.
        var executions: [String: Int] = [:]
        var perWorker: [Int] = []
        for worker in workers {
            var mine = 0
            for line in worker.stdout.split(separator: "\n") {
                guard let entry = jsonObject(String(line)), entry["msg"] as? String == "Processing job", let id = entry["jobId"] as? String else { continue }
                executions[id, default: 0] += 1
                mine += 1
            }
            perWorker.append(mine)
        }
        #expect(executions.count == 5000)
        #expect(executions.values.allSatisfy { $0 == 1 })
        #expect(perWorker.allSatisfy { $0 > 0 }, "every worker took part: \(perWorker)")
        #expect(try await Self.count(table, "attempts <> 1") == 0)
        try await TestPostgres.sql("DROP TABLE public.\(table) CASCADE")
    }

    @Test("an idle worker with a 10 s poll interval starts an inserted job well under a second later (LISTEN)")
    func pickup() async throws {
        let folder = try TemporaryDirectory()
        let table = TestPostgres.freshTable()
        let port = try freePort()
        let worker = try WorkerProcess(environment: Self.environment(table: table, port: port, ["POLL_INTERVAL_MS": "10000"]), directory: folder.url)
        defer { worker.kill9() }
        let ready = try await eventually("ready", timeout: .seconds(60)) { try await http(port: port, path: "/ready").status == 200 }
        #expect(ready, "worker output: \(worker.stdout.suffix(3000))")
        try await Task.sleep(for: .milliseconds(300))
        var latencies: [Double] = []
        for index in 0..<5 {
            try await TestPostgres.sql("INSERT INTO public.\(table) (prompt) VALUES ('hand-written \(index)')")
            #expect(try await eventually("completed", timeout: .seconds(5)) { try await Self.count(table, "prompt = 'hand-written \(index)' AND status = 'completed'") == 1 })
            let seconds = try await TestPostgres.sql("SELECT extract(epoch FROM started_at - created_at) FROM public.\(table) WHERE prompt = 'hand-written \(index)'")
            latencies.append(Double(seconds) ?? 99)
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(latencies.allSatisfy { $0 < 0.5 }, "pickup latencies \(latencies)")
        worker.send(SIGTERM)
        #expect(await worker.waitForExit(timeout: .seconds(10)) == 0)
        try await TestPostgres.sql("DROP TABLE public.\(table) CASCADE")
    }

    @Test("PostgreSQL restarted while a worker processes a stream of jobs: every job ends completed")
    func postgresRestart() async throws {
        let folder = try TemporaryDirectory()
        let postgres = try await PrivatePostgres.make()
        defer { postgres.destroy() }
        let port = try freePort()
        var environment = Self.environment(table: "coding_jobs", port: port, ["MAX_CONCURRENT_JOBS": "4", "POLL_INTERVAL_MS": "500"])
        environment["DATABASE_URL"] = postgres.url
        let worker = try WorkerProcess(environment: environment, directory: folder.url)
        defer { worker.kill9() }
        #expect(try await eventually("ready") { try await http(port: port, path: "/ready").status == 200 })
        let first = (0..<400).map { #"{"prompt":"before \#($0)","payload":{"sleepMs":10}}"# }.joined(separator: "\n")
        _ = try await WorkerProcess.command(["enqueue", "--jsonl", "-"], environment: environment, directory: folder.url, stdin: Data(first.utf8))
        try await Task.sleep(for: .milliseconds(300))
        #expect(Int(try await postgres.sql("SELECT count(*) FROM coding_jobs WHERE status = 'pending'")) ?? 0 > 0, "the restart happens mid-stream")
        try await postgres.stop(mode: "fast")
        try await postgres.start()
        #expect(try await http(port: port, path: "/health").status == 200, "the health endpoint stays up")
        let second = (0..<100).map { #"{"prompt":"after \#($0)"}"# }.joined(separator: "\n")
        let enqueue = try await WorkerProcess.command(["enqueue", "--jsonl", "-"], environment: environment, directory: folder.url, stdin: Data(second.utf8))
        #expect(enqueue.status == 0)
        let done = try await eventually("all completed", timeout: .seconds(60)) {
            try await postgres.sql("SELECT count(*) FROM coding_jobs WHERE status = 'completed'") == "500"
        }
        let statuses = (try? await postgres.sql("SELECT status || ' ' || count(*) FROM coding_jobs GROUP BY status")) ?? "?"
        #expect(done, "statuses: \(statuses)")
        worker.send(SIGTERM)
        #expect(await worker.waitForExit(timeout: .seconds(20)) == 0)
    }

    @Test("PostgreSQL unreachable at start-up: the worker waits and retries, answers /health, then works")
    func unreachableAtStartup() async throws {
        let folder = try TemporaryDirectory()
        let postgres = try await PrivatePostgres.make()
        defer { postgres.destroy() }
        try await postgres.stop()
        let port = try freePort()
        var environment = Self.environment(table: "coding_jobs", port: port)
        environment["DATABASE_URL"] = postgres.url
        let worker = try WorkerProcess(environment: environment, directory: folder.url)
        defer { worker.kill9() }
        #expect(try await eventually("retry logged", timeout: .seconds(20)) { worker.stdout.contains("Database unreachable at start-up, retrying") })
        #expect(worker.process.isRunning)
        #expect(try await http(port: port, path: "/health").status == 200, "alive while waiting")
        #expect(try await http(port: port, path: "/ready").status == 503, "not ready while waiting")
        try await postgres.start()
        #expect(try await eventually("ready", timeout: .seconds(60)) { worker.stdout.contains("Worker service ready") })
        let id = try await WorkerProcess.command(["enqueue", "--prompt", "late"], environment: environment, directory: folder.url)
            .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try await eventually("completed") { try await postgres.sql("SELECT status FROM coding_jobs WHERE id = '\(id)'") == "completed" })
        worker.send(SIGTERM)
        #expect(await worker.waitForExit(timeout: .seconds(20)) == 0)
    }

    @Test("SIGTERM while the worker waits for an unreachable database: it stops and exits 0")
    func sigtermWhileWaitingForDatabase() async throws {
        let folder = try TemporaryDirectory()
        let postgres = try await PrivatePostgres.make()
        defer { postgres.destroy() }
        try await postgres.stop()
        var environment = Self.environment(table: "coding_jobs", port: try freePort())
        environment["DATABASE_URL"] = postgres.url
        let worker = try WorkerProcess(environment: environment, directory: folder.url)
        defer { worker.kill9() }
        #expect(try await eventually("retry logged", timeout: .seconds(20)) { worker.stdout.contains("Database unreachable at start-up, retrying") })
        worker.send(SIGTERM)
        #expect(await worker.waitForExit(timeout: .seconds(20)) == 0)
        #expect(worker.stdout.contains("Worker service stopped cleanly"))
    }
}
