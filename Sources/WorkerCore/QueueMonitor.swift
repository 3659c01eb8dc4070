import Logging
import ServiceLifecycle

/// Logs "Queue statistics" every interval, from one store query, and sets the queue depth gauges.
public struct QueueMonitor: Service {
    private let store: any JobStore
    private let interval: Duration
    private let servedQueues: Set<String>
    private let logger: Logger

    /// - Parameter servedQueues: the queues this worker claims from: their depth series are always
    ///   on `/metrics`, beside the 50 deepest other queues and an `other` bucket for the rest.
    public init(store: any JobStore, interval: Duration, servedQueues: [String], logger: Logger) {
        self.store = store
        self.interval = interval
        self.servedQueues = Set(servedQueues)
        self.logger = logger
    }

    public func run() async throws {
        logger.info("Queue monitoring started", metadata: ["intervalMs": .stringConvertible(interval.inMilliseconds)])
        WorkerMetrics.shared.queueStatsStarting()
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await report()
                do { try await Task.sleep(for: interval) } catch { return }
            }
        }
        logger.info("Queue monitoring stopped")
    }

    private func report() async {
        do {
            let stats = try await withTimeout(max(interval, .seconds(5)), operation: "queue statistics") { [store, interval] in
                try await store.stats(window: interval)
            }
            WorkerMetrics.shared.queueStats(stats, servedQueues: servedQueues)
            logger.info("Queue statistics", metadata: stats.monitorMetadata)
        } catch where Task.isCancelled {
            // Shutdown: nothing failed.
            return
        } catch {
            WorkerMetrics.shared.storeError(operation: "stats")
            logger.warning("Could not read queue statistics", metadata: ["error": "\(error)"])
        }
    }
}

extension QueueStats {
    /// The statistics as log metadata, with the keys of `worker stats --json`.
    public var logMetadata: Logger.Metadata {
        // Figures that do not exist yet (no pending job, nothing finished) are left out.
        var metadata: Logger.Metadata = [
            "pending": .stringConvertible(pending),
            "processing": .stringConvertible(processing),
            "completed": .stringConvertible(completed),
            "failed": .stringConvertible(failed),
            "cancelled": .stringConvertible(cancelled),
        ]
        if let age = oldestPendingAgeSeconds { metadata["oldestPendingAgeSeconds"] = .stringConvertible((age * 1000).rounded() / 1000) }
        if let rate = successRate { metadata["successRate"] = .stringConvertible(rate) }
        if sessions != SessionStats() {
            metadata["sessionsRunning"] = .stringConvertible(sessions.running)
            metadata["sessionsWaiting"] = .stringConvertible(sessions.waiting)
            metadata["sessionsBlocked"] = .stringConvertible(sessions.blocked)
            metadata["sessionWaitingTurns"] = .stringConvertible(sessions.waitingTurns)
            if let wait = sessions.oldestWaitSeconds { metadata["oldestSessionWaitSeconds"] = .stringConvertible((wait * 1000).rounded() / 1000) }
        }
        return metadata
    }

    /// ``logMetadata`` plus the window figures: throughput and run times.
    public var monitorMetadata: Logger.Metadata {
        var metadata = logMetadata
        func rounded(_ value: Double?) -> Logger.MetadataValue? {
            value.map { .stringConvertible(($0 * 1000).rounded() / 1000) }
        }
        metadata["completedPerSecond"] = rounded(completedPerSecond)
        metadata["meanDurationSeconds"] = rounded(meanDurationSeconds)
        metadata["p95DurationSeconds"] = rounded(p95DurationSeconds)
        return metadata
    }
}
