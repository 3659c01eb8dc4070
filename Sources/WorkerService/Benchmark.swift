import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import WorkerCore

/// `worker bench`: measures the real processor (same claim, completion and wake-up code as
/// `worker run`) against the configured database, in a scratch table it drops afterwards.
public struct Benchmark: Sendable {
    public struct ThroughputResult: Sendable {
        public var jobs: Int
        public var concurrency: Int
        public var seconds: Double
        public var cpuSeconds: Double
        public var peakRSSBytes: Int
        /// How many sessions the jobs were spread over (`nil`: none had a session).
        public var sessions: Int?
        /// Jobs held by the processor (running or waiting for their outcome's write), on average
        /// over the run: how busy it kept its slots, or, with sessions, the sessions.
        public var meanInFlight: Double
        public var jobsPerSecond: Double { Double(jobs) / seconds }
        public var cpuSecondsPer1000Jobs: Double { cpuSeconds * 1000 / Double(jobs) }
    }

    public struct LatencyResult: Sendable {
        /// Enqueue-to-handler-start times (from the enqueue call, so including the producer's
        /// INSERT and commit), sorted.
        public var milliseconds: [Double]
        /// Commit-to-handler-start times (from the moment the enqueue call returned, the job
        /// committed), sorted; the pickup alone. Zero when the handler started first.
        public var afterCommitMilliseconds: [Double]

        public func percentile(_ p: Double) -> Double { Self.percentile(p, of: milliseconds) }
        public func afterCommitPercentile(_ p: Double) -> Double { Self.percentile(p, of: afterCommitMilliseconds) }

        static func percentile(_ p: Double, of sorted: [Double]) -> Double {
            guard !sorted.isEmpty else { return 0 }
            let index = min(sorted.count - 1, Int((p / 100 * Double(sorted.count)).rounded(.up)) - 1)
            return sorted[max(0, index)]
        }
    }

    let configuration: WorkerConfiguration
    let logger: Logger
    let progress: @Sendable (String) -> Void

    public init(configuration: WorkerConfiguration, logger: Logger, progress: @escaping @Sendable (String) -> Void) {
        var configuration = configuration
        configuration.jobsTable = "bench_\(UUID().uuidString.prefix(8).lowercased())"
        self.configuration = configuration
        self.logger = logger
        self.progress = progress
    }

    /// Inserts `jobs` no-op jobs, then runs the processor with `concurrency` slots until all are
    /// done. With `sessions`, job `i` is a turn of session `i % sessions` (so the turns of each
    /// session run one at a time, in order).
    public func throughput(jobs: Int, concurrency: Int, sessions: Int? = nil) async throws -> ThroughputResult {
        Self.bootstrapMetrics()
        let sessionIDs = (0..<(sessions ?? 0)).map { _ in UUID() }
        return try await withScratchStore { store in
            let batch = 5_000
            var inserted = 0
            while inserted < jobs {
                let count = min(batch, jobs - inserted)
                _ = try await store.enqueue((inserted..<(inserted + count)).map { index in
                    NewJob(prompt: "bench", sessionID: sessionIDs.isEmpty ? nil : sessionIDs[index % sessionIDs.count])
                })
                inserted += count
                progress("inserted \(inserted) of \(jobs) jobs")
            }
            // As the peers' harness does before it starts the clock: settle the database after the
            // load (statistics, dirty pages), and have the connections the processor uses at once
            // (claims, outcome writes, notifications) open.
            progress("settling the database after the load")
            try await store.settle()
            try await withThrowingTaskGroup(of: Void.self) { pings in
                for _ in 0..<4 { pings.addTask { try await store.ping() } }
                try await pings.waitForAll()
            }
            let counter = CountingHandler()
            let processor = makeProcessor(store: store, handler: counter, concurrency: concurrency)
            let clock = ContinuousClock()
            var measured: (seconds: Double, cpuSeconds: Double)?
            let cpuBefore = Self.cpuSeconds()
            let start = clock.now
            var inFlightSamples = 0, inFlightSum = 0
            try await run(processor) {
                var lastProgress = ContinuousClock.now
                while true {
                    try await Task.sleep(for: .milliseconds(2))
                    let done = counter.count
                    inFlightSum += processor.runningJobCount
                    inFlightSamples += 1
                    if ContinuousClock.now - lastProgress > .milliseconds(250) {
                        progress("processed \(done) of \(jobs) jobs")
                        lastProgress = .now
                    }
                    // Every handler ran, and no job waits for its outcome to be written: the clock
                    // stops here (the harness stops when the database shows no unfinished job;
                    // the count below checks the same, outside the measured time).
                    if done >= jobs, processor.runningJobCount == 0 {
                        measured = ((clock.now - start).inSeconds, Self.cpuSeconds() - cpuBefore)
                        return
                    }
                }
            }
            let completed = try await store.stats().completed
            guard completed == jobs, let measured else {
                throw BenchmarkError.incomplete(completed: completed, jobs: jobs)
            }
            return ThroughputResult(
                jobs: jobs,
                concurrency: concurrency,
                seconds: measured.seconds,
                cpuSeconds: measured.cpuSeconds,
                peakRSSBytes: Self.peakRSSBytes(),
                sessions: sessions,
                meanInFlight: inFlightSamples == 0 ? 0 : Double(inFlightSum) / Double(inFlightSamples)
            )
        }
    }

    /// With the processor idle, inserts one job at a time, `gap` apart, and measures how long
    /// each takes from the insert's commit to its handler's start.
    public func latency(jobs: Int, gap: Duration) async throws -> LatencyResult {
        Self.bootstrapMetrics()
        return try await withScratchStore { store in
            let handler = StartTimingHandler()
            let processor = makeProcessor(store: store, handler: handler, concurrency: 1)
            var samples: [Double] = []
            var afterCommit: [Double] = []
            try await run(processor) {
                try await Task.sleep(for: .milliseconds(500))
                for index in 0..<jobs {
                    try await Task.sleep(for: gap)
                    let committed = ContinuousClock.now
                    let id = try await store.enqueue([NewJob(prompt: "bench")])[0]
                    let returned = ContinuousClock.now
                    let started = try await handler.waitForStart(of: id)
                    samples.append((started - committed).inSeconds * 1000)
                    afterCommit.append(max(0, (started - returned).inSeconds * 1000))
                    progress("measured \(index + 1) of \(jobs) pickups")
                }
            }
            return LatencyResult(milliseconds: samples.sorted(), afterCommitMilliseconds: afterCommit.sorted())
        }
    }

    /// The processor records its metrics into Prometheus, as under `worker run`, so that their
    /// cost is part of the figures.
    private static func bootstrapMetrics() {
        _ = MetricsSetup.registry
    }

    private func makeProcessor(store: any JobStore, handler: any JobHandler, concurrency: Int) -> JobProcessor {
        var processorConfiguration = configuration.processorConfiguration
        processorConfiguration.maxConcurrentJobs = concurrency
        var quiet = logger
        if logger.logLevel > .trace { quiet.logLevel = max(logger.logLevel, .warning) }
        return JobProcessor(store: store, handler: handler, configuration: processorConfiguration, logger: quiet)
    }

    private func withScratchStore<T: Sendable>(_ body: (any BenchmarkJobStore) async throws -> T) async throws -> T {
        try await JobStoreConnector.withBenchmarkStore(configuration, logger: logger) { store in
            try await store.migrate()
            do {
                let result = try await body(store)
                try await store.dropTable()
                return result
            } catch {
                try? await store.dropTable()
                throw error
            }
        }
    }

    /// Runs `processor` in a service group while `body` runs, then shuts it down.
    private func run(_ processor: JobProcessor, _ body: () async throws -> Void) async throws {
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: [processor], logger: logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            do {
                try await body()
            } catch {
                await group.triggerGracefulShutdown()
                throw error
            }
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }

    static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }

    static func peakRSSBytes() -> Int {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return usage.ru_maxrss * 1024
    }
}

/// Completes every job at once and counts them.
private final class CountingHandler: JobHandler {
    private let completed = Atomic<Int>(0)
    var count: Int { completed.load(ordering: .relaxed) }

    func handle(_ job: ClaimedJob, context: JobContext) async throws -> String {
        completed.add(1, ordering: .relaxed)
        return "{}"
    }
}

/// Notes when each job's handler starts.
private final class StartTimingHandler: JobHandler {
    private let starts = Mutex<[UUID: ContinuousClock.Instant]>([:])

    func handle(_ job: ClaimedJob, context: JobContext) async throws -> String {
        let now = ContinuousClock.now
        starts.withLock { $0[job.job.id] = now }
        return "{}"
    }

    func waitForStart(of id: UUID) async throws -> ContinuousClock.Instant {
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if let start = starts.withLock({ $0.removeValue(forKey: id) }) { return start }
            try await Task.sleep(for: .microseconds(200))
        }
        throw TimeoutError(operation: "job pickup", timeout: .seconds(30))
    }
}
