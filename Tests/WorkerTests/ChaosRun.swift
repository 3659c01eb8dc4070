import Foundation
import Testing

/// One chaos case: its own PostgreSQL, workers that record every execution, and the accounting.
final class ChaosRun: @unchecked Sendable {
    // @unchecked: used by one serialized test at a time.
    struct Worker {
        let id: String
        let process: WorkerProcess
        let port: Int
    }

    struct Execution: Hashable {
        let job: String
        let attempt: Int
        let worker: String
    }

    let name: String
    let postgres: PrivatePostgres
    let folder: URL
    let log: String
    let lease: Duration
    private var generator: SplitMix64
    private(set) var workers: [Worker] = []
    private(set) var killed: Set<String> = []
    private var nextWorker = 0
    private let directory: TemporaryDirectory

    static let script: String = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/chaos-job.sh").path

    /// A new case with its cluster started and migrated; made off the cooperative pool (initdb,
    /// pg_ctl and the migration block for seconds).
    static func make(name: String, lease: Duration) async throws -> ChaosRun {
        try await TestPostgres.offThePool { try ChaosRun(name: name, lease: lease) }
    }

    private init(name: String, lease: Duration) throws {
        self.name = name
        self.lease = lease
        directory = try TemporaryDirectory()
        folder = directory.url
        log = folder.appendingPathComponent("executions.log").path
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        postgres = try PrivatePostgres()
        var hash: UInt64 = 1469598103934665603
        for byte in name.utf8 { hash = (hash ^ UInt64(byte)) &* 1099511628211 }
        generator = SplitMix64(seed: ChaosTests.seed ^ hash)
        _ = try WorkerProcess.commandSync(["migrate"], environment: environment(), directory: folder)
    }

    func random(in range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &generator) }

    func environment(_ extra: [String: String] = [:]) -> [String: String] {
        var environment = [
            "DATABASE_URL": postgres.url, "JOB_COMMAND": Self.script, "JOB_ENV_PASSTHROUGH": "WORKER_ID,CHAOS_LOG",
            "CHAOS_LOG": log, "LEASE_DURATION_MS": "\(lease.inMillisecondsValue)", "POLL_INTERVAL_MS": "500",
            "LOG_FORMAT": "json", "JOB_KILL_GRACE_MS": "300", "RETRY_BACKOFF_BASE_MS": "50", "RETRY_BACKOFF_MAX_MS": "200",
            "MONITOR_INTERVAL_MS": "60000", "JOB_WORKDIR_ROOT": folder.appendingPathComponent("work").path,
        ]
        environment.merge(extra) { $1 }
        return environment
    }

    func startWorker(concurrency: Int = 4, extra: [String: String] = [:]) throws -> Worker {
        nextWorker += 1
        let id = "\(name)-w\(nextWorker)"
        let port = try freePort()
        let process = try WorkerProcess(
            environment: environment(["WORKER_ID": id, "HEALTH_CHECK_PORT": "\(port)", "MAX_CONCURRENT_JOBS": "\(concurrency)"].merging(extra) { $1 }),
            directory: folder
        )
        let worker = Worker(id: id, process: process, port: port)
        workers.append(worker)
        return worker
    }

    func waitReady(_ workers: [Worker]) async throws {
        for worker in workers {
            #expect(try await eventually("\(worker.id) ready", timeout: .seconds(30)) { try await http(port: worker.port, path: "/ready").status == 200 })
        }
    }

    /// Enqueues jobs whose prompt is "MODE SLEEP_MS".
    func enqueue(_ jobs: [(String, Int)], maxAttempts: Int = 10) async throws {
        try await enqueue(lines: jobs.map { #"{"prompt":"\#($0.0) \#($0.1)","maxAttempts":\#(maxAttempts)}"# })
    }

    /// Enqueues JSONL lines, as `worker enqueue --jsonl -` reads them, `batchSize` a statement,
    /// with the chaos environment changed by `extra`.
    func enqueue(lines jsonl: [String], batchSize: Int? = nil, extra: [String: String] = [:]) async throws {
        let lines = jsonl.joined(separator: "\n")
        let result = try await WorkerProcess.command(["enqueue", "--jsonl", "-"] + (batchSize.map { ["--batch-size", "\($0)"] } ?? []), environment: environment(extra), directory: folder, stdin: Data(lines.utf8))
        try #require(result.status == 0, "enqueue: \(result.stderr)")
    }

    func executions() -> [Execution] {
        ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").compactMap { line in
            let parts = line.split(separator: " ")
            guard parts.count == 3, let attempt = Int(parts[1]) else { return nil }
            return Execution(job: String(parts[0]), attempt: attempt, worker: String(parts[2]))
        }
    }

    /// Does `fault(index)` when the jobs finished first reach each of `fractions` of `total`,
    /// and checks that each came while jobs were still open.
    ///
    /// At points of progress rather than after sleeps: a run faster than its sleeps (a faster
    /// worker or machine) ended before its first fault, and the case passed with no kill and no
    /// restart at all.
    func inject(at fractions: [Double], of total: Int, timeout: Duration = .seconds(180), _ fault: (Int) async throws -> Void) async throws {
        let deadline = ContinuousClock.now + timeout
        for (index, fraction) in fractions.enumerated() {
            let target = max(1, Int(Double(total) * fraction))
            while true {
                // Jittered, so that a fault lands at a random moment of a job's run.
                try await Task.sleep(for: .milliseconds(random(in: 20...120)))
                let done = Int((try? await postgres.sql("SELECT count(*) FROM coding_jobs WHERE status IN ('completed', 'failed')")) ?? "") ?? 0
                if done >= target {
                    #expect(done < total, "fault \(index + 1) of \(fractions.count) came while jobs were open (\(done) of \(total) done)")
                    break
                }
                try #require(ContinuousClock.now < deadline, "fault \(index + 1) of \(fractions.count): \(done) of \(total) jobs done, waiting for \(target)")
            }
            try await fault(index)
        }
    }

    func kill(_ worker: Worker) {
        worker.process.send(SIGKILL)
        WorkerProcess.reap(worker.process.process.processIdentifier)
        killed.insert(worker.id)
    }

    /// Waits for the queue to drain, stops the live workers with SIGTERM (each must exit 0), and
    /// checks the accounting: nothing lost, only expected failures, every duplicate explained.
    func finish(
        workers: [Worker],
        expectFailed: Int,
        timeout: Duration = .seconds(90),
        restarts: Int = 0,
        outages: Int = 0,
        pauses: Int = 0
    ) async throws {
        let drained = try await eventually("queue drained", timeout: timeout) {
            try await TestPostgres.countPending(postgres) == 0
        }
        let open = (try? await postgres.sql("SELECT status || ' ' || count(*) FROM coding_jobs GROUP BY status")) ?? "?"
        #expect(drained, "still open: \(open)")
        for worker in workers where worker.process.process.isRunning && !killed.contains(worker.id) {
            worker.process.send(SIGTERM)
            #expect(await worker.process.waitForExit(timeout: .seconds(30)) == 0, "\(worker.id) stopped cleanly")
        }
        let rows = try await postgres.sql("SELECT id || ' ' || status || ' ' || split_part(prompt, ' ', 1) FROM coding_jobs").split(separator: "\n")
        var modes: [String: String] = [:]
        var completed = 0, failed = 0, lost = 0
        for row in rows {
            let parts = row.split(separator: " ").map(String.init)
            guard parts.count == 3 else { continue }
            modes[parts[0]] = parts[2]
            switch parts[1] {
            case "completed": completed += 1
            case "failed": failed += 1
            default: lost += 1
            }
        }
        // A duplicate execution: an "ok" job started more than once. Explained when the earlier run
        // was on a worker that was killed, or by an outage or pause of this case.
        var byJob: [String: [Execution]] = [:]
        for execution in executions() { byJob[execution.job, default: []].append(execution) }
        var duplicates = 0, explained = 0
        for (job, runs) in byJob where modes[job] == "ok" && runs.count > 1 {
            let sorted = runs.sorted { $0.attempt < $1.attempt }
            for (earlier, _) in zip(sorted, sorted.dropFirst()) {
                duplicates += 1
                if killed.contains(earlier.worker) || outages + pauses + restarts > 0 { explained += 1 }
            }
        }
        let sameAttemptTwice = byJob.values.contains { runs in Set(runs.map(\.attempt)).count < runs.count }
        var causes = ["\(killed.count) kills"]
        if outages > 0 { causes.append("\(outages) outage") }
        if pauses > 0 { causes.append("\(pauses) pause") }
        if restarts > 0 { causes.append("\(restarts) restart") }
        let summary = "enqueued \(rows.count), completed \(completed), failed \(failed), lost \(lost), duplicate executions \(duplicates) (\(explained) explained by \(causes.joined(separator: ", ")))"
        print("chaos \(name) [seed \(ChaosTests.seed)\(ChaosTests.long ? ", long" : "")]: \(summary)")
        #expect(lost == 0, "\(summary)")
        #expect(failed == expectFailed, "\(summary)")
        #expect(explained == duplicates, "\(summary)")
        // Otherwise every execution of a job has an attempt number of its own, except: a job given
        // back at shutdown runs again under the same number (it was not counted), and in an outage
        // a claim whose rows reached the worker may be lost in the crash before it commits, so the
        // job runs again under the same number (its first run's outcome is then discarded).
        if restarts == 0 && outages == 0 { #expect(!sameAttemptTwice, "one attempt never runs twice") }
    }

    func tearDown() {
        for worker in workers { worker.process.kill9() }
        postgres.destroy()
    }
}

/// A small seeded generator, so a failing chaos run can be replayed with its seed.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension Duration {
    var inMillisecondsValue: Int64 { components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000 }
}

extension TestPostgres {
    static func countPending(_ postgres: PrivatePostgres) async throws -> Int {
        Int(try await postgres.sql("SELECT count(*) FROM coding_jobs WHERE status IN ('pending', 'processing')")) ?? -1
    }
}

extension WorkerProcess {
    /// Runs a CLI command to completion, blocking (for initialisers).
    static func commandSync(_ arguments: [String], environment: [String: String], directory: URL) throws -> Int32 {
        let worker = try WorkerProcess(arguments, environment: environment, directory: directory)
        // waitpid, not waitUntilExit() (see ``WorkerProcess/reap(_:)``).
        var status: Int32 = 0
        while true {
            let reaped = waitpid(worker.process.processIdentifier, &status, 0)
            if reaped == worker.process.processIdentifier { return (status >> 8) & 0xff }
            if reaped == -1 && errno != EINTR {
                // Foundation reaped it first: its view of the exit holds then.
                while worker.process.isRunning { usleep(10_000) }
                return worker.process.terminationStatus
            }
        }
    }
}
