import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Claims jobs from a ``JobStore`` and runs them through a ``JobHandler``, at most
/// `maxConcurrentJobs` at a time.
///
/// - Claims as many jobs as it has free slots in one store call, when woken (an enqueue in
///   this process, a store notification, a finished job) or on its poll timer.
/// - Renews the leases of running jobs every third of the lease duration; a renewal that finds
///   a job cancelled or taken over stops its handler.
/// - Records each outcome conditionally on its lease; failed attempts are retried per the
///   ``RetryPolicy`` until `maxAttempts`.
/// - Returns jobs of dead workers (expired leases) to the queue.
/// - On graceful shutdown stops claiming, waits up to `shutdownTimeout` for running jobs,
///   then cancels them and gives them back as `pending` without counting the attempt.
///   Cancelling the task that runs the processor stops its running jobs at once; `run()`
///   returns after their handlers have returned.
public final class JobProcessor: Service, Sendable {
    struct RunningJob {
        var lease: Lease
        var sessionID: UUID?
        var stop: StopSignal
        /// How long the handler ran, once it returned.
        var duration: Duration?
        /// When the handler returned: since then the job only waits for its outcome to be written
        /// (its slot is free).
        var handlerFinishedAt: ContinuousClock.Instant?

        /// The handler returned.
        var handlerFinished: Bool { handlerFinishedAt != nil }
    }

    enum Phase {
        case idle, running, draining, stopped
    }

    struct State {
        var phase = Phase.idle
        /// The current attempt of each job this worker runs (or records the outcome of).
        var running: [UUID: RunningJob] = [:]
        /// Earlier attempts of jobs this worker claimed again before they had ended: another
        /// worker rescued the job while this one was late renewing it, and the job came back
        /// to this worker. Their lease is lost (they are being stopped), yet their handler may
        /// still run and their entry must not be mistaken for the new attempt's.
        var superseded: [Lease: RunningJob] = [:]
        /// Running jobs whose handler has not returned: the slots in use.
        var busy = 0
        var skipShutdownWait = false
        /// No more claims: the first shutdown signal came (``stopClaiming()``).
        var claimsStopped = false
        /// When retries this worker scheduled fall due, so it wakes for them between polls.
        var retryDues: [ContinuousClock.Instant] = []
        /// A write of this worker let a session's next turn through: the claim that follows is
        /// for that turn, not a race with other workers for an insert (no backoff before it).
        var sessionTurnsLetThrough = false
        /// Claims that failed since the last one that did not (``claimFailuresInARow``).
        var claimFailuresInARow = 0
        /// When lease renewals began to fail, with none that worked since (``leaseRenewalsFailing``).
        var renewalsFailingSince: ContinuousClock.Instant?
        /// The last error of a job this worker could not run (``WorkerFaultError``).
        var lastWorkerFault = ""
        /// The end of `run()` waits here for the last running job.
        var lastJobEnded: CheckedContinuation<Void, Never>?

        /// Attempts running or waiting for their outcome, superseded ones included.
        var entryCount: Int { running.count + superseded.count }

        /// Notes a retry of this worker's falling due at `due`. Due times are removed when the
        /// claim loop, with the queue drained, wakes for them; under a backlog it never is, so
        /// the passed ones also go here once there are more than ``retryDuesKept`` (before,
        /// the list grew by one entry a retry for as long as the backlog lasted).
        mutating func noteRetryDue(at due: ContinuousClock.Instant, now: ContinuousClock.Instant) {
            retryDues.append(due)
            if retryDues.count > Self.retryDuesKept { retryDues.removeAll { $0 <= now } }
        }

        static let retryDuesKept = 1024

        /// Adds a claimed attempt; an earlier attempt of the same job still here is superseded,
        /// and its stop signal returned (to trigger: its lease is lost).
        mutating func insert(_ job: RunningJob) -> StopSignal? {
            guard let earlier = running.updateValue(job, forKey: job.lease.jobID) else { return nil }
            superseded[earlier.lease] = earlier
            return earlier.stop
        }

        /// Changes the entry of `lease`'s attempt, wherever it is.
        mutating func update(_ lease: Lease, _ body: (inout RunningJob) -> Void) {
            if let index = running.index(forKey: lease.jobID), running.values[index].lease == lease {
                body(&running.values[index])
            } else if let index = superseded.index(forKey: lease) {
                body(&superseded.values[index])
            }
        }

        /// Removes the entry of `lease`'s attempt (never a later attempt's of the same job).
        mutating func remove(_ lease: Lease) -> RunningJob? {
            if running[lease.jobID]?.lease == lease { return running.removeValue(forKey: lease.jobID) }
            return superseded.removeValue(forKey: lease)
        }

        /// The end of `run()`, to resume once no job is left.
        mutating func takeLastJobEndedIfIdle() -> CheckedContinuation<Void, Never>? {
            guard running.isEmpty, superseded.isEmpty else { return nil }
            defer { lastJobEnded = nil }
            return lastJobEnded
        }
    }

    enum Finish {
        case handled(Result<String, any Error>)
        case stopped(StopReason)
    }

    public let configuration: JobProcessorConfiguration
    let store: any JobStore
    let handler: any JobHandler
    let logger: Logger
    let state = Mutex(State())
    /// Jobs this worker could not run (``WorkerFaultError``) since the last one it could: an
    /// atomic, so that each job's end reads it without taking the processor's lock.
    let workerFaultsInARow = Atomic<Int>(0)
    /// New jobs may be waiting (enqueue, notification, rescue, shutdown).
    let jobsAvailable = WakeSignal()
    /// A slot became free (a job finished) or shutdown wants attention.
    let slotFreed = WakeSignal()
    let recorder: OutcomeRecorder
    /// Writes the running jobs' events; a job's outcome goes to `recorder` after its events.
    let eventRecorder: JobEventRecorder
    /// What the contexts of all jobs share: one reference per job instead of a logger copy.
    let contextBase: JobContext.Base
    let metrics = WorkerMetrics.shared
    /// The `queues` label of the processor's gauges, joined once.
    let queueLabel: String
    /// The queues this worker claims from: the only per-job `queue` labels besides `other`.
    let servedQueues: Set<String>

    public init(store: any JobStore, handler: any JobHandler, configuration: JobProcessorConfiguration, logger: Logger) {
        self.store = store
        self.handler = handler
        self.configuration = configuration
        self.queueLabel = configuration.queues.joined(separator: ",")
        self.servedQueues = Set(configuration.queues)
        var logger = logger
        logger[metadataKey: "workerId"] = .string(configuration.workerID)
        self.logger = logger
        self.contextBase = JobContext.Base(logger: logger, workerID: configuration.workerID)
        self.recorder = OutcomeRecorder(
            store: store, logger: logger, timeout: configuration.leaseDuration, maximumBatch: max(1, configuration.outcomeBatchSize))
        self.eventRecorder = JobEventRecorder(store: store, logger: logger, timeout: configuration.leaseDuration)
    }

    /// Jobs running right now (including those whose outcome is being written).
    public var runningJobCount: Int { state.withLock { $0.entryCount } }

    /// How many jobs a claim may take now: free handler slots, but with no more jobs waiting for
    /// their outcome to be written than `maxConcurrentJobs` or one full write (`outcomeBatchSize`),
    /// whichever is more.
    /// A slot frees when its handler returns, so that the next claim need not wait for the write;
    /// without the second bound, a worker whose handlers outpace the outcome writes kept claiming,
    /// and the jobs waiting to be recorded (and their memory) grew without limit.
    func claimableSlots(_ state: State) -> Int {
        let recording = state.entryCount - state.busy
        let recordingLimit = max(configuration.maxConcurrentJobs, configuration.outcomeBatchSize)
        return min(configuration.maxConcurrentJobs - state.busy, recordingLimit - recording)
    }

    /// How long the oldest outcome still waiting to be written has waited (`nil`: none waits).
    public var oldestUnwrittenOutcomeAge: Duration? {
        let now = ContinuousClock.now
        return state.withLock { state in
            (state.running.values.compactMap(\.handlerFinishedAt) + state.superseded.values.compactMap(\.handlerFinishedAt)).min().map { now - $0 }
        }
    }

    /// Whether the store keeps refusing this worker's outcomes: the last write failed, and an
    /// outcome has waited for longer than a lease. `/ready` reports it, and those jobs' leases
    /// are no longer renewed (see ``isGivenUp(_:now:)``). Writes that are merely slow (a loaded
    /// machine, a big batch) do not count.
    public var outcomeWritesStalled: Bool {
        recorder.isFailing && (oldestUnwrittenOutcomeAge ?? .zero) > configuration.leaseDuration
    }

    /// Whether the store keeps refusing this worker's job events: every write for longer than a
    /// lease has failed. Its jobs' outcomes wait for their events, and its commands for room in
    /// the events' buffer: `/ready` reports it (the claims, which need no free slot to fail,
    /// and the outcome writes, which have nothing to write, said nothing). The leases are still
    /// renewed: the commands are running.
    public var eventWritesStalled: Bool {
        (eventRecorder.failingFor ?? .zero) > configuration.leaseDuration
    }

    /// Whether this worker has stopped holding `job`: its handler returned a lease ago or more
    /// and the store keeps failing to take outcomes. Its lease is then no longer renewed nor
    /// spared from the rescue, so the job returns to the queue instead of being held (and hidden
    /// from the other workers) for as long as the writes fail.
    func isGivenUp(_ job: RunningJob, now: ContinuousClock.Instant) -> Bool {
        guard let finished = job.handlerFinishedAt else { return false }
        return now - finished > configuration.leaseDuration && recorder.isFailing
    }

    /// `true` while the processor claims new jobs (started and not shutting down).
    public var isClaiming: Bool { state.withLock { $0.phase == .running && !$0.claimsStopped } }

    /// How many claims in a row have failed (0: the last one did not): a worker whose claims keep
    /// failing (a lock held for longer than the store timeout, a privilege taken away) while
    /// the database still answers a trivial query is not ready (``claimFailuresMakingUnready``).
    public var claimFailuresInARow: Int { state.withLock { $0.claimFailuresInARow } }

    /// Whether this worker's lease renewals have failed for longer than half a lease: its running
    /// jobs' leases then run out, and other workers' rescues take them while they still run here.
    /// `/ready` reports it (on PostgreSQL renewals have a connection of their own, which the
    /// readiness ping does not use: a broken one showed nowhere but in the log).
    public var leaseRenewalsFailing: Bool {
        guard let since = state.withLock({ $0.renewalsFailingSince }) else { return false }
        return ContinuousClock.now - since > configuration.leaseDuration / 2
    }

    /// How many failed claims in a row make the worker unready: one or two are a blip it rides out.
    public static let claimFailuresMakingUnready = 3

    /// How many jobs in a row this worker could not run (``WorkerFaultError``) make it unready and
    /// pause its claims (``JobProcessorConfiguration/workerFaultPause``), so that the healthy
    /// workers take the jobs.
    public static let workerFaultsMakingUnready = 3

    /// Why this worker cannot run jobs, when the last ``workerFaultsMakingUnready`` or more could
    /// not be run (`nil`: it can).
    public var workerFault: (count: Int, error: String)? {
        let count = workerFaultsInARow.load(ordering: .relaxed)
        guard count >= Self.workerFaultsMakingUnready else { return nil }
        return (count, state.withLock { $0.lastWorkerFault })
    }

    /// Wakes the claim loop at once, e.g. after this process enqueued a job.
    public func notifyJobsAvailable() {
        jobsAvailable.signal()
    }

    /// Claims nothing more from now on (the first shutdown signal). The service group stops
    /// its services one at a time, and the processor's turn, when its jobs are drained, may
    /// come a while later: it went on claiming meanwhile, jobs it then had to give back.
    public func stopClaiming() {
        state.withLock { $0.claimsStopped = true }
        jobsAvailable.signal()
    }

    /// Ends the shutdown wait now: running jobs are cancelled and given back (a second signal).
    public func skipShutdownWait() {
        state.withLock { $0.skipShutdownWait = true }
        slotFreed.signal()
    }

    public func run() async throws {
        let started = state.withLock { state -> Bool in
            guard state.phase == .idle else { return false }
            state.phase = .running
            return true
        }
        guard started else { throw JobProcessorError.alreadyRunning }
        metrics.prepareStoreErrors()
        logger.info(
            "Job processor started",
            metadata: [
                "queues": .string(configuration.queues.joined(separator: ",")),
                "maxConcurrentJobs": .stringConvertible(configuration.maxConcurrentJobs),
                "pollIntervalMs": .stringConvertible(configuration.pollInterval.inMilliseconds),
            ]
        )
        await withDiscardingTaskGroup { background in
            background.addTask { await self.recorder.run(onRecorded: self.recorded) }
            background.addTask {
                await self.eventRecorder.run(onBrokenStreams: { self.giveUp(brokenStreams: $0) }, onLostLeases: { self.stop(lostLeases: $0) })
            }
            background.addTask { await self.watchStore() }
            background.addTask { await self.renewLeases() }
            background.addTask { await self.rescueExpiredLeases() }
            background.addTask {
                try? await gracefulShutdown()
                self.beginDraining()
            }
            // Each job runs in a task of its own (see `start(_:stop:)`): cancelling the processor
            // ends the claim loop, and the drain stops the jobs at once, as the shutdown timeout
            // does; `run()` returns after the last one.
            await self.claimLoop()
            await self.drain()
            await self.lastJobEnded()
            background.cancelAll()
        }
        state.withLock { $0.phase = .stopped }
        logger.info("Job processor stopped")
    }

    // MARK: - Shutdown

    func beginDraining() {
        let changed = state.withLock { state -> Bool in
            guard state.phase == .running else { return false }
            state.phase = .draining
            return true
        }
        guard changed else { return }
        jobsAvailable.signal()
        slotFreed.signal()
    }

    /// Waits for running jobs up to the shutdown timeout (not at all when the processor is
    /// cancelled), then stops the rest.
    func drain() async {
        let count = runningJobCount
        guard count > 0 else { return }
        logger.info(
            "Waiting for running jobs to finish",
            metadata: [
                "runningJobs": .stringConvertible(count),
                "shutdownTimeoutMs": .stringConvertible(configuration.shutdownTimeout.inMilliseconds),
            ]
        )
        let deadline = ContinuousClock.now + configuration.shutdownTimeout
        while true {
            let (remaining, skip) = state.withLock { ($0.entryCount, $0.skipShutdownWait || Task.isCancelled) }
            if remaining == 0 { return }
            let left = deadline - .now
            if skip || left <= .zero { break }
            await slotFreed.wait(timeout: left)
        }
        // (Superseded attempts are being stopped already: their lease is lost.)
        let running = state.withLock { $0.running }
        for (id, job) in running where !job.handlerFinished {
            logger.warning(
                "Shutdown timeout - job may be incomplete",
                metadata: [
                    "jobId": .string(id.lowercasedText),
                    "sessionId": .string(job.sessionID?.lowercasedText ?? ""),
                    "attempt": .stringConvertible(job.lease.attempt),
                ]
            )
            job.stop.trigger(.shutdown)
        }
        // Give the outcomes (releases included) a moment to be written; then stop trying.
        let grace = ContinuousClock.now + configuration.releaseGrace
        while runningJobCount > 0, ContinuousClock.now < grace, !Task.isCancelled {
            await slotFreed.wait(timeout: grace - .now)
        }
        if runningJobCount > 0 {
            // Events first: outcomes wait for them.
            eventRecorder.abandon()
            let abandoned = recorder.abandon()
            if !abandoned.isEmpty { recorded(abandoned, writes: nil) }
        }
    }

    /// Returns once no job runs or waits for its outcome (at once if none does).
    func lastJobEnded() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ended = state.withLock { state -> Bool in
                if state.entryCount == 0 { return true }
                state.lastJobEnded = continuation
                return false
            }
            if ended { continuation.resume() }
        }
    }

    // MARK: - Helpers

    func updateSlotGauges() {
        let busy = state.withLock { $0.busy }
        metrics.slots(running: busy, free: configuration.maxConcurrentJobs - busy, queues: queueLabel)
    }

    /// The longest a store call may take before the processor gives up on it and retries:
    /// a call slower than a lease is of no use anyway.
    var storeTimeout: Duration { configuration.storeTimeout }

    static func backoff(failures: Int, cap: Duration) -> Duration {
        let exponent = min(max(failures - 1, 0), 16)
        let delay = Duration.milliseconds(100 * (1 << exponent))
        return min(delay, max(cap, .milliseconds(100)))
    }

    /// The text recorded as `last_error` for a handler error.
    static func describe(_ error: any Error) -> String {
        String(describing: error)
    }
}

extension JobOutcome {
    var name: String {
        switch self {
        case .completed: "completed"
        case .retry: "retry"
        case .failed: "failed"
        case .released: "released"
        case .deferred: "deferred"
        }
    }
}
