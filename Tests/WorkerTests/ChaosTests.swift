import Foundation
import Testing

/// The fault-injection suite: real workers, a real PostgreSQL of its own, damage done on purpose.
///
/// `scripts/chaos [short|long] [SEED]` runs it; `CHAOS_MODE` and `CHAOS_SEED` reach it through the
/// environment. Each case ends with one line:
/// `enqueued N, completed N, failed F, lost 0, duplicate executions D (D explained by K kills)`.
@Suite("chaos", .serialized, .enabled(if: TestPostgres.isAvailable, "needs PostgreSQL binaries: run scripts/test or scripts/chaos"))
struct ChaosTests {
    static let long = ProcessInfo.processInfo.environment["CHAOS_MODE"] == "long"
    static let seed = UInt64(ProcessInfo.processInfo.environment["CHAOS_SEED"] ?? "") ?? 20261129

    @Test("kill -9 in the middle of jobs: another worker finishes them within about two leases")
    func killNine() async throws {
        let chaos = try await ChaosRun.make(name: "kill-9", lease: .seconds(3))
        defer { chaos.tearDown() }
        let a = try chaos.startWorker()
        let b = try chaos.startWorker()
        try await chaos.waitReady([a, b])
        try await chaos.enqueue((0..<30).map { _ in ("ok", chaos.random(in: 400...900)) })
        try await Task.sleep(for: .milliseconds(700))
        chaos.kill(a)
        let running = try await chaos.postgres.sql("SELECT id FROM coding_jobs WHERE status = 'processing' AND locked_by = '\(a.id)'")
            .split(separator: "\n").map(String.init)
        #expect(!running.isEmpty, "worker A was running jobs when killed")
        let clock = ContinuousClock()
        let killed = clock.now
        // Every job A was running is started again by B within about two lease durations.
        #expect(try await eventually("taken over", timeout: .seconds(20)) {
            Set(running).isSubset(of: Set(chaos.executions().filter { $0.worker == b.id }.map(\.job)))
        })
        #expect(clock.now - killed < .seconds(3) * 2 + .seconds(3))
        try await chaos.finish(workers: [b], expectFailed: 0)
    }

    @Test("repeated kills: four workers, random short jobs, a random worker killed and restarted every couple of seconds")
    func repeatedKills() async throws {
        let chaos = try await ChaosRun.make(name: "repeated-kills", lease: .seconds(3))
        defer { chaos.tearDown() }
        var workers = try (0..<4).map { _ in try chaos.startWorker(concurrency: 8) }
        try await chaos.waitReady(workers)
        let jobs = Self.long ? 50_000 : 1_500
        try await chaos.enqueue((0..<jobs).map { _ in ("ok", chaos.random(in: 0...40)) })
        let rounds = Self.long ? 200 : 6
        try await chaos.inject(at: (0..<rounds).map { 0.05 + 0.85 * Double($0) / Double(rounds) }, of: jobs, timeout: .seconds(Self.long ? 600 : 150)) { _ in
            let victim = chaos.random(in: 0...(workers.count - 1))
            chaos.kill(workers[victim])
            workers[victim] = try chaos.startWorker(concurrency: 8)
        }
        #expect(chaos.killed.count == rounds, "every planned kill happened")
        try await chaos.finish(workers: workers, expectFailed: 0, timeout: .seconds(Self.long ? 600 : 150))
    }

    @Test("PostgreSQL stopped for a few seconds (immediate) and started again: workers go on, /health stays up")
    func postgresOutage() async throws {
        let chaos = try await ChaosRun.make(name: "postgres-outage", lease: .seconds(10))
        defer { chaos.tearDown() }
        let workers = try (0..<2).map { _ in try chaos.startWorker(concurrency: 4) }
        try await chaos.waitReady(workers)
        try await chaos.enqueue((0..<400).map { _ in ("ok", chaos.random(in: 5...30)) })
        // Stopped while jobs run and wait (checked), not after a time in which they could all be done.
        try await chaos.inject(at: [0.2], of: 400) { _ in try await chaos.postgres.stop(mode: "immediate") }
        for _ in 0..<6 {
            for worker in workers { #expect(try await http(port: worker.port, path: "/health").status == 200) }
            try await Task.sleep(for: .milliseconds(500))
        }
        try await chaos.postgres.start()
        try await chaos.finish(workers: workers, expectFailed: 0, timeout: .seconds(120), outages: 1)
    }

    @Test("SIGTERM under load with jobs longer than the shutdown timeout: exit 0 in time, unfinished jobs pending again")
    func sigtermUnderLoad() async throws {
        let chaos = try await ChaosRun.make(name: "sigterm", lease: .seconds(10))
        defer { chaos.tearDown() }
        let worker = try chaos.startWorker(concurrency: 6, extra: ["SHUTDOWN_TIMEOUT_MS": "1000"])
        try await chaos.waitReady([worker])
        try await chaos.enqueue((0..<3).map { _ in ("ok", 5000) } + (0..<40).map { _ in ("ok", 20) })
        #expect(try await eventually("long jobs running") { chaos.executions().count >= 10 })
        let clock = ContinuousClock()
        let start = clock.now
        worker.process.send(SIGTERM)
        #expect(await worker.process.waitForExit(timeout: .seconds(15)) == 0)
        #expect(clock.now - start < .seconds(1) + .seconds(3), "exits within the timeout plus a margin")
        let rows = try await chaos.postgres.sql("SELECT status || ' ' || attempts FROM coding_jobs WHERE prompt = 'ok 5000'")
        for row in rows.split(separator: "\n") { #expect(row == "pending 0", "unfinished: \(row)") }
        let done = try await chaos.postgres.sql("SELECT count(*) FROM coding_jobs WHERE status = 'completed'")
        #expect(Int(done) ?? 0 > 0)
        #expect(try await chaos.postgres.sql("SELECT count(*) FROM coding_jobs WHERE status NOT IN ('completed', 'pending')") == "0")
        // The rest completes with a new worker.
        let next = try chaos.startWorker(concurrency: 6)
        try await chaos.finish(workers: [next], expectFailed: 0, timeout: .seconds(60), restarts: 1)
    }

    @Test("handlers that throw, hang past their timeout or crash follow the retry policy; the worker keeps serving")
    func failingHandlers() async throws {
        let chaos = try await ChaosRun.make(name: "failing-handlers", lease: .seconds(10))
        defer { chaos.tearDown() }
        let worker = try chaos.startWorker(concurrency: 4, extra: ["JOB_TIMEOUT_MS": "500", "JOB_MAX_ATTEMPTS": "3"])
        try await chaos.waitReady([worker])
        try await chaos.enqueue([("throw", 10), ("throw", 10), ("hang", 0), ("crash", 10)] + (0..<40).map { _ in ("ok", 10) })
        try await chaos.finish(workers: [worker], expectFailed: 1)
        #expect(try await chaos.postgres.sql("SELECT last_error FROM coding_jobs WHERE prompt = 'hang 0'").contains("timed out"))
        #expect(try await chaos.postgres.sql("SELECT status || ' ' || attempts FROM coding_jobs WHERE prompt = 'crash 10'") == "completed 2")
        #expect(try await chaos.postgres.sql("SELECT DISTINCT status || ' ' || attempts FROM coding_jobs WHERE prompt = 'throw 10'") == "completed 3")
    }

    @Test("a worker paused past its lease (SIGSTOP) and resumed: its late completion does not overwrite the newer attempt")
    func pausedWorker() async throws {
        let chaos = try await ChaosRun.make(name: "sigstop", lease: .milliseconds(2500))
        defer { chaos.tearDown() }
        let a = try chaos.startWorker(concurrency: 1)
        try await chaos.waitReady([a])
        try await chaos.enqueue([("ok", 4000)])
        #expect(try await eventually("started on A") { chaos.executions().contains { $0.worker == a.id } })
        a.process.send(SIGSTOP)
        let b = try chaos.startWorker(concurrency: 1)
        #expect(try await eventually("rescued and completed by B", timeout: .seconds(30)) {
            try await chaos.postgres.sql("SELECT status FROM coding_jobs") == "completed"
        })
        a.process.send(SIGCONT)
        try await Task.sleep(for: .seconds(5))  // A's child finishes and A tries to record its stale outcome.
        let result = try await chaos.postgres.sql("SELECT result::text || ' ' || attempts FROM coding_jobs")
        #expect(result.contains(b.id) && result.contains("\"attempt\": 2") && result.hasSuffix(" 2"), "final row: \(result)")
        #expect(a.process.stdout.contains("lease was lost") || a.process.stdout.contains("Lease lost"), "A noticed")
        try await chaos.finish(workers: [a, b], expectFailed: 0, pauses: 1)
    }

    @Test("rows a worker cannot read (inserted by hand) never crash it or make its claim loop spin")
    func undecodableRows() async throws {
        let chaos = try await ChaosRun.make(name: "bad-rows", lease: .seconds(10))
        defer { chaos.tearDown() }
        let worker = try chaos.startWorker(concurrency: 2)
        try await chaos.waitReady([worker])
        // As in a legacy table whose rows predate the status check (which then stays unvalidated).
        try await chaos.postgres.sql("ALTER TABLE coding_jobs DROP CONSTRAINT coding_jobs_status_check")
        try await chaos.postgres.sql("INSERT INTO coding_jobs (prompt, status) VALUES ('ok 1', 'bogus'), ('ok 1', 'RUNNING')")
        try await chaos.enqueue((0..<20).map { _ in ("ok", 5) })
        #expect(try await eventually("good jobs done") { try await chaos.postgres.sql("SELECT count(*) FROM coding_jobs WHERE status = 'completed'") == "20" })
        try await Task.sleep(for: .seconds(1))
        let claims = worker.process.stdout.components(separatedBy: "Failed to claim").count - 1
        #expect(claims == 0)
        let list = try await WorkerProcess.command(["jobs", "list", "--json"], environment: chaos.environment(), directory: chaos.folder)
        #expect(list.status == 0, "listing works despite unreadable rows: \(list.stderr)")
        #expect(list.stderr.contains("cannot be read"))
        worker.process.send(SIGTERM)
        #expect(await worker.process.waitForExit(timeout: .seconds(10)) == 0)
    }
}

/// The cases that apply to the embedded store, with two processes sharing one SQLite file.
@Suite("chaos on SQLite", .serialized)
struct SQLiteChaosTests {
    @Test("kill -9 a worker in the middle of jobs: another process on the same file finishes them, each job completed")
    func killNine() async throws {
        let folder = try TemporaryDirectory()
        let log = folder.url.appendingPathComponent("executions.log").path
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        func environment(_ id: String, _ port: Int) -> [String: String] {
            [
                "JOB_COMMAND": ChaosRun.script, "JOB_ENV_PASSTHROUGH": "WORKER_ID,CHAOS_LOG", "CHAOS_LOG": log, "WORKER_ID": id,
                "LEASE_DURATION_MS": "3000", "MAX_CONCURRENT_JOBS": "4", "HEALTH_CHECK_PORT": "\(port)", "LOG_FORMAT": "json",
                "JOB_WORKDIR_ROOT": folder.url.appendingPathComponent("work").path,
            ]
        }
        let (portA, portB) = (try freePort(), try freePort())
        let a = try WorkerProcess(environment: environment("sqlite-a", portA), directory: folder.url)
        let b = try WorkerProcess(environment: environment("sqlite-b", portB), directory: folder.url)
        defer { a.kill9(); b.kill9() }
        for port in [portA, portB] { #expect(try await eventually("ready") { try await http(port: port, path: "/ready").status == 200 }) }
        let lines = (0..<24).map { #"{"prompt":"ok \#(300 + 40 * $0)","maxAttempts":5}"# }.joined(separator: "\n")
        _ = try await WorkerProcess.command(["enqueue", "--jsonl", "-"], environment: environment("cli", portA), directory: folder.url, stdin: Data(lines.utf8))
        // Killed once A runs a job (each runs 300 ms or more, so it is still running): that job
        // must run again on B. After a fixed wait, A might have run nothing yet.
        #expect(try await eventually("A started a job", timeout: .seconds(30)) {
            ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains(" sqlite-a")
        })
        a.kill9()
        let done = try await eventually("all completed", timeout: .seconds(60)) {
            jsonObject(try await WorkerProcess.command(["stats", "--json"], environment: environment("cli", portA), directory: folder.url).stdout)?["completed"] as? Int == 24
        }
        #expect(done)
        let executions = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").map { $0.split(separator: " ") }
        let byJob = Dictionary(grouping: executions, by: { String($0[0]) })
        let rerun = byJob.values.filter { $0.count > 1 }
        // Every job that ran twice first ran on the killed worker.
        #expect(!rerun.isEmpty, "the job A was running when killed ran again")
        #expect(rerun.allSatisfy { runs in runs.sorted { $0[1] < $1[1] }.first?[2] == "sqlite-a" })
        #expect(byJob.count == 24)
        print("chaos sqlite-kill-9: enqueued 24, completed 24, failed 0, lost 0, duplicate executions \(rerun.count) (\(rerun.count) explained by 1 kills)")
        b.send(SIGTERM)
        #expect(await b.waitForExit(timeout: .seconds(10)) == 0)
    }
}
