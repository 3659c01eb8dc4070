import CoreMetrics
import Foundation
import Synchronization

/// The processor's and monitor's metrics, through the swift-metrics API (a no-op until the
/// process bootstraps a backend, e.g. Prometheus). Names follow Prometheus conventions.
///
/// Metric objects are cached per label set, so the claim loop does not look them up per job.
///
/// Every `queue` label comes from a bounded source, because Prometheus keeps every series it
/// ever saw: the per-job metrics are labelled with the worker's own queues (`WORKER_QUEUES`) or
/// `other`, and the depth gauges with ``QueueDepthSelection``'s choice, whose stale series are
/// destroyed (swift-prometheus then drops them from the registry).
final class WorkerMetrics: Sendable {
    static let shared = WorkerMetrics()

    /// The per-job metrics of one queue, made once: the hot path looks up one short key.
    private final class QueueMetrics: Sendable {
        let claimed: Counter
        let completed: Counter
        let retried: Counter
        let rescued: Counter
        let duration: CoreMetrics.Timer
        let failed: [JobFailureReason: Counter]
        let givenBack: [JobGivenBackReason: Counter]

        init(queue: String) {
            let labels = [("queue", queue)]
            claimed = Counter(label: "worker_jobs_claimed_total", dimensions: labels)
            completed = Counter(label: "worker_jobs_completed_total", dimensions: labels)
            retried = Counter(label: "worker_jobs_retried_total", dimensions: labels)
            rescued = Counter(label: "worker_jobs_rescued_total", dimensions: labels)
            duration = CoreMetrics.Timer(label: "worker_job_duration_seconds", dimensions: labels, preferredDisplayUnit: .seconds)
            var failed: [JobFailureReason: Counter] = [:]
            for reason in JobFailureReason.allCases {
                failed[reason] = Counter(label: "worker_jobs_failed_total", dimensions: labels + [("reason", reason.rawValue)])
            }
            self.failed = failed
            var givenBack: [JobGivenBackReason: Counter] = [:]
            for reason in JobGivenBackReason.allCases {
                givenBack[reason] = Counter(label: "worker_jobs_given_back_total", dimensions: labels + [("reason", reason.rawValue)])
            }
            self.givenBack = givenBack
        }
    }

    private let queues = Mutex<[String: QueueMetrics]>([:])
    private let cache = Mutex<[String: any Sendable]>([:])

    private func forQueue(_ queue: String) -> QueueMetrics {
        queues.withLock { cache in
            if let metrics = cache[queue] { return metrics }
            let metrics = QueueMetrics(queue: queue)
            cache[queue] = metrics
            return metrics
        }
    }

    /// The metric for `name` and `dimensions`, made once (for the less frequent metrics).
    private func cached<Metric: Sendable>(_ name: String, _ dimensions: [(String, String)], make: () -> Metric) -> Metric {
        let key = "\(Metric.self)|" + name + dimensions.map { "|\($0.0)=\($0.1)" }.joined()
        return cache.withLock { cache in
            if let metric = cache[key] as? Metric { return metric }
            let metric = make()
            cache[key] = metric
            return metric
        }
    }

    private func counter(_ name: String, _ dimensions: [(String, String)]) -> Counter {
        cached(name, dimensions) { Counter(label: name, dimensions: dimensions) }
    }

    private func gauge(_ name: String, _ dimensions: [(String, String)]) -> Gauge {
        cached(name, dimensions) { Gauge(label: name, dimensions: dimensions) }
    }

    func claimed(queue: String, count: Int = 1) {
        forQueue(queue).claimed.increment(by: count)
    }

    func completed(queue: String, duration: Duration) {
        let metrics = forQueue(queue)
        metrics.completed.increment()
        metrics.duration.recordNanoseconds(Int64(duration.inSeconds * 1e9))
    }

    /// A failed attempt; `reason` is `error`, `timeout` or `cancelled`.
    func failed(queue: String, reason: JobFailureReason, duration: Duration, willRetry: Bool) {
        let metrics = forQueue(queue)
        metrics.failed[reason]?.increment()
        metrics.duration.recordNanoseconds(Int64(duration.inSeconds * 1e9))
        if willRetry { metrics.retried.increment() }
    }

    /// A job whose lease expired went back to `pending` (or `failed`). Any worker rescues any
    /// queue's jobs, so `queue` must be one of this worker's queues or `other` (see `JobProcessor`).
    func rescued(queue: String) {
        forQueue(queue).rescued.increment()
    }

    private struct SlotGauges: Sendable {
        let inFlight: Gauge
        let free: Gauge
    }

    private let slotGauges = Mutex<[String: SlotGauges]>([:])

    func slots(running: Int, free: Int, queues: String) {
        let gauges = slotGauges.withLock { cache in
            if let gauges = cache[queues] { return gauges }
            let gauges = SlotGauges(
                inFlight: Gauge(label: "worker_jobs_in_flight", dimensions: [("queue", queues)]),
                free: Gauge(label: "worker_free_slots", dimensions: [("queue", queues)])
            )
            cache[queues] = gauges
            return gauges
        }
        gauges.inFlight.record(Double(running))
        gauges.free.record(Double(free))
    }

    /// An attempt that ended without an outcome of its own: the job went back to the queue
    /// (or on with another worker) and runs again.
    func givenBack(queue: String, reason: JobGivenBackReason) {
        forQueue(queue).givenBack[reason]?.increment()
    }

    func storeError(operation: String) {
        counter("worker_store_errors_total", [("operation", operation)]).increment()
    }

    /// The `operation` values of `worker_store_errors_total` (docs/WORKER_SERVICE.md, "Metrics").
    static let storeOperations = ["claim", "record", "renew", "rescue", "events", "stats", "retention"]

    /// Makes every `worker_store_errors_total` series at 0, when the processor starts: made at
    /// its first error, a series' first errors were no increase to `rate()` or `increase()`,
    /// and a retention failing once every five minutes never kept the documented alert firing.
    func prepareStoreErrors() {
        for operation in Self.storeOperations { _ = counter("worker_store_errors_total", [("operation", operation)]) }
    }

    /// The statistics' age counted from the monitor's start until its first read: without a
    /// first read the gauge did not exist, and the staleness alert had nothing to fire on.
    func queueStatsStarting() {
        gauge("worker_queue_stats_timestamp_seconds", []).record(Date().timeIntervalSince1970)
    }

    /// Job events stored (one write).
    func eventsWritten(_ count: Int) {
        if count > 0 { counter("worker_job_events_total", []).increment(by: count) }
    }

    /// What an attempt spent: the tokens and cost its agent reported, the CPU time and peak
    /// memory the worker measured of its command (histograms, when measured).
    func usage(_ usage: JobUsage) {
        if usage.cpuSeconds > 0 {
            cached("worker_job_cpu_seconds", []) { Recorder(label: "worker_job_cpu_seconds", dimensions: [], aggregate: true) }
                .record(usage.cpuSeconds)
        }
        if usage.peakMemoryBytes > 0 {
            cached("worker_job_peak_memory_bytes", []) { Recorder(label: "worker_job_peak_memory_bytes", dimensions: [], aggregate: true) }
                .record(Double(usage.peakMemoryBytes))
        }
        if usage.inputTokens > 0 { counter("worker_job_tokens_total", [("kind", "input")]).increment(by: Int(usage.inputTokens)) }
        if usage.outputTokens > 0 { counter("worker_job_tokens_total", [("kind", "output")]).increment(by: Int(usage.outputTokens)) }
        if usage.costUSD > 0 {
            cached("worker_job_cost_usd_total", []) { FloatingPointCounter(label: "worker_job_cost_usd_total", dimensions: []) }
                .increment(by: usage.costUSD)
        }
    }

    /// Events past `JOB_EVENTS_LIMIT`, only counted.
    func eventsDropped(_ count: Int) {
        if count > 0 { counter("worker_job_events_dropped_total", []).increment(by: count) }
    }

    /// An event whose text was not valid UTF-8, held a NUL byte, was cut to `JOB_EVENT_MAX_BYTES`,
    /// or was refused by the database: stored changed.
    func eventReplaced() {
        counter("worker_job_event_replacements_total", []).increment()
    }

    /// An outcome the database refused was stored with the refused values removed.
    func outcomeMadeStorable() {
        counter("worker_outcomes_made_storable_total", []).increment()
    }

    func notificationReconnect() {
        counter("worker_notification_reconnects_total", [("channel", "jobs")]).increment()
    }

    /// Why the claim loop woke: `notification` (LISTEN, an enqueue in this process) or `poll`.
    func wake(_ source: String, queues: String) {
        counter("worker_claim_wakeups_total", [("queue", queues), ("source", source)]).increment()
    }

    /// The six depth gauges of one `queue` label.
    private struct DepthGauges: Sendable {
        let pending, processing, completed, failed, cancelled, oldestPendingAge: Gauge

        init(queue: String) {
            func jobs(_ status: String) -> Gauge { Gauge(label: "worker_queue_jobs", dimensions: [("queue", queue), ("status", status)]) }
            pending = jobs("pending")
            processing = jobs("processing")
            completed = jobs("completed")
            failed = jobs("failed")
            cancelled = jobs("cancelled")
            oldestPendingAge = Gauge(label: "worker_queue_oldest_pending_age_seconds", dimensions: [("queue", queue)])
        }

        func record(_ counts: QueueCounts) {
            pending.record(Double(counts.pending))
            processing.record(Double(counts.processing))
            completed.record(Double(counts.completed))
            failed.record(Double(counts.failed))
            cancelled.record(Double(counts.cancelled))
            oldestPendingAge.record(counts.oldestPendingAgeSeconds ?? 0)
        }

        /// Removes the series from the backend (swift-prometheus unregisters them from its registry).
        func destroy() {
            for gauge in [pending, processing, completed, failed, cancelled, oldestPendingAge] { gauge.destroy() }
        }
    }

    /// The depth gauges on show, by `queue` label.
    private let depthGauges = Mutex<[String: DepthGauges]>([:])

    /// Queue depth by queue and status, and each queue's oldest due pending age, for the queues
    /// ``QueueDepthSelection`` picks from `stats` (the served ones, the 50 deepest others and
    /// `other`). Series of queues it no longer picks (gone from the table, or no longer among the
    /// deepest) are destroyed, so that they leave `/metrics` instead of showing their last value forever.
    func queueStats(_ stats: QueueStats, servedQueues: Set<String>) {
        let selection = QueueDepthSelection(stats.queues, served: servedQueues)
        depthGauges.withLock { gauges in
            for (queue, counts) in selection.series {
                let queueGauges = gauges[queue] ?? DepthGauges(queue: queue)
                gauges[queue] = queueGauges
                queueGauges.record(counts)
            }
            for queue in Array(gauges.keys) where selection.series[queue] == nil {
                gauges.removeValue(forKey: queue)?.destroy()
            }
        }
        if let rate = stats.completedPerSecond {
            gauge("worker_queue_completed_per_second", [("queue", "all")]).record(rate)
        }
        gauge("worker_sessions_active", []).record(stats.sessions.running)
        gauge("worker_sessions_waiting", []).record(stats.sessions.waiting)
        gauge("worker_sessions_blocked", []).record(stats.sessions.blocked)
        gauge("worker_session_waiting_turns", []).record(stats.sessions.waitingTurns)
        gauge("worker_session_turn_wait_seconds", []).record(stats.sessions.oldestWaitSeconds ?? 0)
        // The gauges above keep their last values while the statistics cannot be read (a queue
        // growing in an outage still shows what it was): this says how old they are.
        gauge("worker_queue_stats_timestamp_seconds", []).record(Date().timeIntervalSince1970)
    }
}

/// Why an attempt ended without completing or failing, for the `reason` label of
/// `worker_jobs_given_back_total`: each means the job runs again, and some (a lost lease, a
/// worker that cannot run jobs) that something needs looking at.
enum JobGivenBackReason: String, Sendable, CaseIterable {
    /// Stopped at shutdown and released (`SHUTDOWN_TIMEOUT_MS` ran out).
    case shutdown
    /// This worker could not run it (the sandbox could not start, a full disk): released.
    case workerFault = "worker_fault"
    /// It could not run yet (its session's workspace in use elsewhere): deferred.
    case deferred
    /// Its lease was no longer this worker's (renewals failed, or a rescue took it): another
    /// worker may run it.
    case leaseLost = "lease_lost"
    /// Some of its events were lost in a database failure: given up, run again after its lease.
    case eventsLost = "events_lost"
}

/// Why an attempt failed, for the `reason` label of `worker_jobs_failed_total`.
public enum JobFailureReason: String, Sendable, CaseIterable {
    case error, timeout, cancelled
    /// The command's memory limit stopped it (`JOB_MEMORY_LIMIT_MB`).
    case outOfMemory = "out_of_memory"
    /// The command reached its process limit (`JOB_PIDS_LIMIT`).
    case pidsLimit = "pids_limit"
    /// The command wrote more than its disk limit (`JOB_DISK_LIMIT_MB`).
    case diskLimit = "disk_limit"
}

/// An error a handler throws that knows its ``JobFailureReason`` (e.g. a command's timeout).
public protocol ClassifiedJobError: Error {
    var failureReason: JobFailureReason { get }
}
