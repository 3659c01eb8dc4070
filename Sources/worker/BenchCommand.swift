import ArgumentParser
import Foundation
import WorkerService

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure throughput or pickup latency against the configured database (in a scratch table).",
        discussion: """
            throughput: inserts --jobs no-op jobs, runs the real processor with --concurrency slots until all are
            done, and prints jobs/s, CPU seconds of this process per 1,000 jobs, and peak RSS.
            latency: with the processor idle, inserts one job every --gap-ms and prints enqueue-to-start percentiles.
            sandbox: starts /bin/true --jobs times as it is and as many times under the job sandbox (JOB_SANDBOX's
            bubblewrap, the arguments a job gets), alternately, and prints both start-to-exit percentiles.
            statements: prints, as one JSON object of name to SQL, the claim and completion statements `worker run`
            prepares for JOBS_TABLE on PostgreSQL (scripts/bench-floor runs them through pgbench); no database is opened.
            """
    )

    enum Mode: String, ExpressibleByArgument, CaseIterable {
        case throughput, latency, sandbox, statements
    }

    @Argument(help: "throughput, latency, sandbox or statements.") var mode: Mode
    @Option(help: "Jobs to run.") var jobs: Int?
    @Option(help: "Processor slots (throughput).") var concurrency: Int = 100
    @Option(help: "Spread the jobs over this many sessions, round robin (throughput): each session's turns run one at a time.") var sessions: Int?
    @Option(name: .customLong("gap-ms"), help: "Milliseconds between inserts (latency).") var gapMs: Int = 20
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        if let jobs, jobs < 1 { throw ValidationError("--jobs must be at least 1") }
        if !(1...10_000).contains(concurrency) { throw ValidationError("--concurrency must be from 1 to 10000") }
        if gapMs < 0 { throw ValidationError("--gap-ms must not be negative") }
        if let sessions, sessions < 1 { throw ValidationError("--sessions must be at least 1") }
        if sessions != nil && mode != .throughput { throw ValidationError("--sessions goes with throughput only") }
    }

    func run() async throws {
        if mode == .statements {
            // No database: the statements are text made from the configuration.
            let statements = try Benchmark.hotPathStatements(configuration: try await WorkerConfiguration.load())
            output(JobPresentation.json(Dictionary(uniqueKeysWithValues: statements.map { ($0.name, $0.sql) }), pretty: true))
            return
        }
        if mode == .sandbox {
            // No database: only the configuration's sandbox settings.
            let configuration = try await WorkerConfiguration.load()
            let result = try await SandboxBenchmark(settings: configuration.sandbox, environment: configuration.environment).run(runs: jobs ?? 200)
            let (plain, boxed) = (result.unconfined, result.sandboxed)
            func p(_ q: Double, _ values: [Double]) -> Double { SandboxBenchmark.Result.percentile(q, of: values) }
            if json {
                output(JobPresentation.json([
                    "mode": "sandbox", "runs": plain.count,
                    "plainP50Ms": round3(p(50, plain)), "plainP99Ms": round3(p(99, plain)),
                    "sandboxedP50Ms": round3(p(50, boxed)), "sandboxedP99Ms": round3(p(99, boxed)),
                    "overheadP50Ms": round3(p(50, boxed) - p(50, plain)), "overheadP99Ms": round3(p(99, boxed) - p(99, plain)),
                ], pretty: false))
            } else {
                output("""
                    sandbox start-up: /bin/true \(plain.count) times each, \(result.description)
                      plain:     p50 \(String(format: "%.2f", p(50, plain))) ms, p99 \(String(format: "%.2f", p(99, plain))) ms
                      sandboxed: p50 \(String(format: "%.2f", p(50, boxed))) ms, p99 \(String(format: "%.2f", p(99, boxed))) ms
                      overhead:  p50 \(String(format: "%.2f", p(50, boxed) - p(50, plain))) ms, p99 \(String(format: "%.2f", p(99, boxed) - p(99, plain))) ms
                    """)
            }
            return
        }
        let context = try await CommandContext.load(minimumLevel: .warning)
        let benchmark = Benchmark(configuration: context.configuration, logger: context.logger) { progress($0) }
        switch mode {
        case .throughput:
            let result = try await benchmark.throughput(jobs: jobs ?? 10_000, concurrency: concurrency, sessions: sessions)
            progress("")
            if json {
                output(JobPresentation.json([
                    "mode": "throughput", "jobs": result.jobs, "concurrency": result.concurrency,
                    "seconds": round3(result.seconds), "jobsPerSecond": round3(result.jobsPerSecond),
                    "cpuSecondsPer1000Jobs": round4(result.cpuSecondsPer1000Jobs), "peakRssBytes": result.peakRSSBytes,
                    "sessions": result.sessions ?? 0, "meanInFlight": round3(result.meanInFlight),
                ], pretty: false))
            } else {
                output("""
                    throughput: \(result.jobs) jobs, concurrency \(result.concurrency), \(context.configuration.store)
                      \(String(format: "%.0f", result.jobsPerSecond)) jobs/s in \(String(format: "%.2f", result.seconds)) s
                      \(String(format: "%.4f", result.cpuSecondsPer1000Jobs)) CPU s per 1,000 jobs (worker process)
                      peak RSS \(result.peakRSSBytes / 1_048_576) MiB
                      \(String(format: "%.1f", result.meanInFlight)) jobs in flight on average\(result.sessions.map { ", over \($0) sessions" } ?? "")
                    """)
            }
        case .sandbox, .statements:
            break
        case .latency:
            let result = try await benchmark.latency(jobs: jobs ?? 200, gap: .milliseconds(gapMs))
            progress("")
            let (p50, p95, p99, max) = (result.percentile(50), result.percentile(95), result.percentile(99), result.milliseconds.last ?? 0)
            if json {
                output(JobPresentation.json([
                    "mode": "latency", "jobs": result.milliseconds.count, "p50Ms": round3(p50), "p95Ms": round3(p95),
                    "p99Ms": round3(p99), "maxMs": round3(max),
                    "afterCommitP50Ms": round3(result.afterCommitPercentile(50)),
                    "afterCommitP95Ms": round3(result.afterCommitPercentile(95)),
                    "afterCommitP99Ms": round3(result.afterCommitPercentile(99)),
                ], pretty: false))
            } else {
                output("""
                    pickup latency: \(result.milliseconds.count) jobs, \(context.configuration.store)
                      from the enqueue call: p50 \(String(format: "%.2f", p50)) ms, p95 \(String(format: "%.2f", p95)) ms, p99 \(String(format: "%.2f", p99)) ms, max \(String(format: "%.2f", max)) ms
                      from its commit:       p50 \(String(format: "%.2f", result.afterCommitPercentile(50))) ms, p95 \(String(format: "%.2f", result.afterCommitPercentile(95))) ms, p99 \(String(format: "%.2f", result.afterCommitPercentile(99))) ms
                    """)
            }
        }
    }

    private func round3(_ value: Double) -> Double { (value * 1000).rounded() / 1000 }
    private func round4(_ value: Double) -> Double { (value * 10000).rounded() / 10000 }
}
