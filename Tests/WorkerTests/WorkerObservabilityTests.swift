import Foundation
import Testing

/// /ready, /metrics and secrets, against the real binary.
@Suite("worker observability", .serialized)
struct WorkerObservabilityTests {
    /// Parses Prometheus text with the Prometheus project's Python parser; returns `name{labels} value` samples.
    static func parsePrometheus(_ text: String) async throws -> [String: Double] {
        let script = """
            import sys
            from prometheus_client.parser import text_string_to_metric_families
            for family in text_string_to_metric_families(sys.stdin.read()):
                for s in family.samples:
                    labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                    print(f"{s.name}{{{labels}}} {s.value}")
            """
        let folder = try TemporaryDirectory()
        let input = folder.url.appendingPathComponent("metrics.txt")
        let program = folder.url.appendingPathComponent("parse.py")
        try text.write(to: input, atomically: true, encoding: .utf8)
        try script.write(to: program, atomically: true, encoding: .utf8)
        let output = try await TestPostgres.offThePool { try TestPostgres.run("/bin/sh", ["-c", "python3 '\(program.path)' < '\(input.path)'"]) }
        var samples: [String: Double] = [:]
        for line in output.split(separator: "\n") {
            guard let space = line.lastIndex(of: " ") else { continue }
            samples[String(line[..<space])] = Double(line[line.index(after: space)...])
        }
        return samples
    }

    @Test("after N jobs, /metrics shows the matching counters and parses as Prometheus text")
    func metrics() async throws {
        let folder = try TemporaryDirectory()
        let port = try freePort()
        let environment = ["JOB_HANDLER": "echo", "HEALTH_CHECK_PORT": "\(port)", "MONITOR_INTERVAL_MS": "200", "RETRY_BACKOFF_BASE_MS": "10"]
        let worker = try WorkerProcess(environment: environment, directory: folder.url)
        defer { worker.kill9() }
        #expect(try await eventually("health") { try await http(port: port, path: "/health").status == 200 })
        let lines = (0..<20).map { #"{"prompt":"ok \#($0)"}"# } + [#"{"prompt":"flaky","payload":{"failTimes":1}}"#, #"{"prompt":"broken","maxAttempts":1,"payload":{"failTimes":5}}"#]
        _ = try await WorkerProcess.command(["enqueue", "--jsonl", "-"], environment: environment, directory: folder.url, stdin: Data(lines.joined(separator: "\n").utf8))
        #expect(try await eventually("done") {
            let stats = jsonObject(try await WorkerProcess.command(["stats", "--json"], environment: environment, directory: folder.url).stdout)
            return stats?["completed"] as? Int == 21 && stats?["failed"] as? Int == 1
        })
        try await Task.sleep(for: .milliseconds(400))
        let response = try await http(port: port, path: "/metrics")
        #expect(response.status == 200)
        let samples = try await Self.parsePrometheus(response.body)
        #expect(samples[#"worker_jobs_completed_total{queue="default"}"#] == 21)
        #expect(samples[#"worker_jobs_claimed_total{queue="default"}"#] == 23)
        #expect(samples[#"worker_jobs_failed_total{queue="default",reason="error"}"#] == 2)
        #expect(samples[#"worker_jobs_retried_total{queue="default"}"#] == 1)
        #expect(samples[#"worker_job_duration_seconds_count{queue="default"}"#] == 23)
        #expect(samples[#"worker_queue_jobs{queue="default",status="completed"}"#] == 21)
        #expect(samples[#"worker_queue_jobs{queue="default",status="failed"}"#] == 1)
        #expect(samples[#"worker_free_slots{queue="default"}"#] == 1)
        // Jobs given back, by why (none here), each series there at 0 from the queue's first claim.
        for reason in ["shutdown", "worker_fault", "deferred", "lease_lost", "events_lost"] {
            #expect(samples[#"worker_jobs_given_back_total{queue="default",reason="\#(reason)"}"#] == 0, "\(reason)")
        }
        // Every store operation's error series, at 0 (before: made at its first error, which was
        // then no increase to the documented alert's increase()).
        for operation in ["claim", "record", "renew", "rescue", "events", "stats", "retention"] {
            #expect(samples[#"worker_store_errors_total{operation="\#(operation)"}"#] == 0, "\(operation)")
        }
        worker.send(SIGTERM)
        #expect(await worker.waitForExit(timeout: .seconds(10)) == 0)
    }

    @Test("a handler that has returned no longer counts in worker_jobs_in_flight, even while its outcome cannot be written (another process holds the database's write lock)")
    func inFlightWhileOutcomesWait() async throws {
        let folder = try TemporaryDirectory()
        let port = try freePort()
        let environment = ["JOB_HANDLER": "echo", "HEALTH_CHECK_PORT": "\(port)", "MAX_CONCURRENT_JOBS": "2"]
        let worker = try WorkerProcess(environment: environment, directory: folder.url)
        defer { worker.kill9() }
        #expect(try await eventually("health") { try await http(port: port, path: "/health").status == 200 })
        let enqueued = try await WorkerProcess.command(
            ["enqueue", "--prompt", "short", "--payload", #"{"sleepMs":5000}"#], environment: environment, directory: folder.url)
        try #require(enqueued.status == 0, "\(enqueued.stderr)")
        // Read here, not through the Prometheus parser (a process each time: on a loaded machine
        // it took longer than the job ran).
        func inFlight() async throws -> Double? {
            let body = try await http(port: port, path: "/metrics").body
            let line = body.split(separator: "\n").first { $0.hasPrefix(#"worker_jobs_in_flight{queue="default"} "#) }
            return line.flatMap { Double($0.split(separator: " ").last ?? "") }
        }
        #expect(try await eventually("running") { try await inFlight() == 1 })
        // Another process takes the file's write lock for 30 s, past the handler's end.
        let database = folder.url.appendingPathComponent("worker.sqlite").path
        let locker = try WorkerProcess(
            ["python3", "-c", "import sqlite3, time; c = sqlite3.connect('\(database)', isolation_level=None); c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(30); c.execute('COMMIT')"],
            environment: ["PATH": "/usr/bin:/bin"], directory: folder.url, executable: URL(fileURLWithPath: "/usr/bin/env"))
        defer { locker.kill9() }
        #expect(try await eventually("locked") { locker.stdout.contains("locked") })
        // The handler returns 5 s after it started; its outcome waits for the lock. Before: the
        // gauge said 1 until the outcome was written, after the lock.
        #expect(try await eventually("the handler's end counted", timeout: .seconds(12)) { try await inFlight() == 0 })
        locker.kill9()
        worker.send(SIGTERM)
        #expect(await worker.waitForExit(timeout: .seconds(20)) == 0)
    }

    @Test("during a graceful shutdown /ready answers 503 while /health stays 200")
    func readyDuringShutdown() async throws {
        let folder = try TemporaryDirectory()
        let port = try freePort()
        // A shutdown that waits long for its running job, so that the checks below fall inside it
        // however late a loaded machine runs them; the job is cancelled afterwards to end it.
        let environment = ["JOB_HANDLER": "echo", "HEALTH_CHECK_PORT": "\(port)", "SHUTDOWN_TIMEOUT_MS": "60000"]
        let worker = try WorkerProcess(environment: environment, directory: folder.url)
        defer { worker.kill9() }
        #expect(try await eventually("ready") { try await http(port: port, path: "/ready").status == 200 })
        let ready = try await http(port: port, path: "/ready")
        #expect(jsonObject(ready.body)?["status"] as? String == "ready")
        let enqueued = try await WorkerProcess.command(["enqueue", "--prompt", "long", "--payload", #"{"sleepMs":120000}"#], environment: environment, directory: folder.url)
        let id = enqueued.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        // The job runs (its slot taken) before the shutdown starts: a worker with nothing running
        // stops (and closes /ready) at once.
        #expect(try await eventually("job running") {
            let stats = jsonObject(try await WorkerProcess.command(["stats", "--json"], environment: environment, directory: folder.url).stdout)
            return stats?["processing"] as? Int == 1
        })
        worker.send(SIGTERM)
        #expect(try await eventually("draining") { try await http(port: port, path: "/ready").status == 503 })
        let draining = try await http(port: port, path: "/ready")
        #expect(draining.status == 503)
        let checks = jsonObject(draining.body)?["checks"] as? [String: String]
        #expect(checks?["processor"]?.contains("failing") == true)
        #expect(try await http(port: port, path: "/health").status == 200)
        // Ending the job ends the shutdown.
        #expect(try await WorkerProcess.command(["jobs", "cancel", id], environment: environment, directory: folder.url).status == 0)
        #expect(await worker.waitForExit(timeout: .seconds(20)) == 0)
    }
}

@Suite("worker observability on PostgreSQL", .serialized, .enabled(if: TestPostgres.isAvailable, "needs TEST_DATABASE_URL: run scripts/test"))
struct WorkerPostgresObservabilityTests {
    /// `worker_queue_stats_timestamp_seconds` from `/metrics`.
    static func statsTimestamp(port: Int) async throws -> Double? {
        let body = try await http(port: port, path: "/metrics").body
        guard let line = body.split(separator: "\n").first(where: { $0.hasPrefix("worker_queue_stats_timestamp_seconds ") }) else { return nil }
        return Double(line.split(separator: " ")[1])
    }

    @Test("/ready flips to 503 when PostgreSQL stops and back to 200 when it returns; the queue gauges' age says they are stale meanwhile")
    func readyFollowsDatabase() async throws {
        let folder = try TemporaryDirectory()
        let postgres = try await PrivatePostgres.make()
        defer { postgres.destroy() }
        let port = try freePort()
        let environment = ["DATABASE_URL": postgres.url, "JOB_HANDLER": "echo", "HEALTH_CHECK_PORT": "\(port)", "MONITOR_INTERVAL_MS": "300"]
        let worker = try WorkerProcess(environment: environment, directory: folder.url)
        defer { worker.kill9() }
        #expect(try await eventually("ready") { try await http(port: port, path: "/ready").status == 200 })
        #expect(try await eventually("statistics read") { try await Self.statsTimestamp(port: port) != nil })
        try await postgres.stop(mode: "immediate")
        #expect(try await eventually("not ready", timeout: .seconds(15)) { try await http(port: port, path: "/ready").status == 503 })
        let lastRead = try #require(try await Self.statsTimestamp(port: port))
        try await Task.sleep(for: .seconds(2))
        #expect(try await Self.statsTimestamp(port: port) == lastRead, "no statistics read while the database is down")
        #expect(Date().timeIntervalSince1970 - lastRead > 1.5)
        let body = try await http(port: port, path: "/ready").body
        // The check is named, the database's error (host, user, driver text) is not: it goes to the log.
        let generic = ["failing: the database is unavailable (the worker logs why)", "failing: the database did not answer within 1 s"]
        let store = (jsonObject(body)?["checks"] as? [String: String])?["store"]
        #expect(store.map(generic.contains) == true, "\(body)")
        #expect(worker.stdout.contains("Readiness check failing"), "the real error is logged")
        #expect(try await http(port: port, path: "/health").status == 200)
        try await postgres.start()
        #expect(try await eventually("ready again", timeout: .seconds(60)) { try await http(port: port, path: "/ready").status == 200 })
        #expect(try await eventually("statistics read again") { (try await Self.statsTimestamp(port: port) ?? 0) > lastRead })
        worker.send(SIGTERM)
        #expect(await worker.waitForExit(timeout: .seconds(20)) == 0)
    }

    @Test("with LOG_LEVEL=trace nothing logged, printed or served contains the database password")
    func noSecretLeaks() async throws {
        let folder = try TemporaryDirectory()
        let postgres = try await PrivatePostgres.make()
        defer { postgres.destroy() }
        let password = "Sup3r-S3cret-\(UUID().uuidString.prefix(6))"
        try await postgres.sql("ALTER USER postgres PASSWORD '\(password)'")
        let url = "postgres://postgres:\(password)@127.0.0.1:\(postgres.port)/postgres"
        let port = try freePort()
        let environment = ["DATABASE_URL": url, "JOB_HANDLER": "echo", "HEALTH_CHECK_PORT": "\(port)", "LOG_LEVEL": "trace", "MONITOR_INTERVAL_MS": "200"]
        var seen: [String] = []
        let check = try await WorkerProcess.command(["config", "check"], environment: environment, directory: folder.url)
        seen += [check.stdout, check.stderr]
        let bad = try await WorkerProcess.command(["run"], environment: environment.merging(["MAX_CONCURRENT_JOBS": "zero"]) { $1 }, directory: folder.url)
        seen += [bad.stdout, bad.stderr]
        let unreachable = try await WorkerProcess.command(["stats"], environment: environment.merging(["DATABASE_URL": "postgres://postgres:\(password)@127.0.0.1:1/postgres"]) { $1 }, directory: folder.url)
        seen += [unreachable.stdout, unreachable.stderr]
        let worker = try WorkerProcess(environment: environment, directory: folder.url)
        defer { worker.kill9() }
        #expect(try await eventually("ready") { try await http(port: port, path: "/ready").status == 200 })
        let enqueue = try await WorkerProcess.command(["enqueue", "--prompt", "x"], environment: environment, directory: folder.url)
        seen += [enqueue.stdout, enqueue.stderr]
        try await Task.sleep(for: .milliseconds(600))
        for path in ["/health", "/ready", "/metrics"] { seen.append(try await http(port: port, path: path).body) }
        worker.send(SIGTERM)
        #expect(await worker.waitForExit(timeout: .seconds(20)) == 0)
        seen += [worker.stdout, worker.stderr]
        #expect(worker.stdout.contains("Job completed"), "the worker really worked")
        #expect(worker.stdout.contains("postgres:***@"), "the URL is logged, redacted")
        for (index, text) in seen.enumerated() {
            #expect(!text.contains(password), "output \(index) leaks the password")
        }
    }

    @Test("/ready answers 503 while job events cannot be written for longer than a lease (every job waits on them), and 200 once they can")
    func readyFollowsEventWrites() async throws {
        // Output events refused (not for a value: a failure that is retried); claims go on.
        try await Self.readyFollows(
            refused: { ("public.\($0)_events", "BEFORE INSERT", "NEW.kind = 'output'") },
            lease: 1500, sleepMs: 1000, failing: "job events could not be written")
    }

    @Test("/ready answers 503 while lease renewals fail for longer than half a lease (the jobs' leases run out under them), and 200 once they work")
    func readyFollowsLeaseRenewals() async throws {
        // A renewal moves a running job's lease and nothing else: refused; claims and outcomes go on.
        try await Self.readyFollows(
            refused: {
                ("public.\($0)", "BEFORE UPDATE",
                 "OLD.status = 'processing' AND NEW.status = 'processing' AND NEW.lease_expires_at IS DISTINCT FROM OLD.lease_expires_at")
            },
            lease: 3000, sleepMs: 8000, failing: "lease renewals have failed")
    }

    /// A worker on a fresh table where a trigger (`refused`: the table it is on, its timing and
    /// its condition, given the jobs table's name) makes one kind of write fail while a job runs: `/ready` answers
    /// 503 naming `failing` (before: 200 throughout, nothing else the probe looked at failed),
    /// then 200 once the trigger is gone.
    static func readyFollows(
        refused: (String) -> (table: String, timing: String, condition: String), lease: Int, sleepMs: Int, failing: String
    ) async throws {
        let folder = try TemporaryDirectory()
        let table = TestPostgres.freshTable()
        let port = try freePort()
        let environment = [
            "DATABASE_URL": TestPostgres.url!, "JOBS_TABLE": table, "JOB_HANDLER": "echo", "HEALTH_CHECK_PORT": "\(port)",
            "LEASE_DURATION_MS": "\(lease)", "MONITOR_INTERVAL_MS": "60000",
        ]
        #expect(try await WorkerProcess.command(["migrate"], environment: environment, directory: folder.url).status == 0)
        defer { Task { _ = try? await TestPostgres.sql("DROP TABLE IF EXISTS public.\(table) CASCADE; DROP FUNCTION IF EXISTS public.\(table)_refuse()") } }
        let trigger = refused(table)
        try await TestPostgres.sql("""
            CREATE FUNCTION public.\(table)_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'refused for the test'; END $$;
            CREATE TRIGGER refuse \(trigger.timing) ON \(trigger.table) FOR EACH ROW WHEN (\(trigger.condition))
                EXECUTE FUNCTION public.\(table)_refuse();
            """)
        let worker = try WorkerProcess(environment: environment, directory: folder.url)
        defer { worker.kill9() }
        #expect(try await eventually("ready") { try await http(port: port, path: "/ready").status == 200 })
        let enqueued = try await WorkerProcess.command(
            ["enqueue", "--prompt", "job", "--payload", #"{"sleepMs":\#(sleepMs)}"#], environment: environment, directory: folder.url)
        try #require(enqueued.status == 0, "\(enqueued.stderr)")
        #expect(try await eventually("not ready", timeout: .seconds(15)) {
            let answer = try await http(port: port, path: "/ready")
            return answer.status == 503 && answer.body.contains(failing)
        })
        try await TestPostgres.sql("DROP TRIGGER refuse ON \(trigger.table)")
        #expect(try await eventually("ready again", timeout: .seconds(30)) { try await http(port: port, path: "/ready").status == 200 })
        #expect(try await eventually("the job completed", timeout: .seconds(30)) {
            Int(try await TestPostgres.sql("SELECT count(*) FROM public.\(table) WHERE status = 'completed'")) == 1
        })
        worker.send(SIGTERM)
        #expect(await worker.waitForExit(timeout: .seconds(30)) == 0)
    }
}
