import Logging
import ServiceLifecycle
import Synchronization

/// Deletes finished jobs older than their retention, in small batches, so the table does not
/// grow without bound. Several workers may run one: the store lets one delete at a time.
public struct RetentionSweeper: Service {
    /// How long to keep each finished state; `nil` keeps it forever.
    public struct Policy: Sendable, Hashable {
        public var completed: Duration?
        /// For `failed` and `cancelled` jobs.
        public var failed: Duration?

        public init(completed: Duration?, failed: Duration?) {
            self.completed = completed
            self.failed = failed
        }
    }

    private let store: any JobStore
    private let policy: Policy
    private let interval: Duration
    private let batchSize: Int
    private let sizes = BatchSizes()
    private let logger: Logger

    public init(store: any JobStore, policy: Policy, interval: Duration = .seconds(300), batchSize: Int = 1000, logger: Logger) {
        self.store = store
        self.policy = policy
        self.interval = interval
        self.batchSize = batchSize
        self.logger = logger
    }

    public func run() async throws {
        let rules = [(JobStatus.completed, policy.completed), (.failed, policy.failed), (.cancelled, policy.failed)].compactMap { status, keep in keep.map { (status, $0) } }
        guard !rules.isEmpty else { return }
        await cancelWhenGracefulShutdown {
            // Start after a random part of the interval, so workers started together do not sweep together.
            try? await Task.sleep(for: interval * Double.random(in: 0.1...1))
            while !Task.isCancelled {
                for (status, keep) in rules { await sweep(status, olderThan: keep) }
                do { try await Task.sleep(for: interval) } catch { return }
            }
        }
    }

    /// Deletes in batches until a batch comes back short.
    ///
    /// A batch that fails is tried again at half the size, down to one job, and the sweep goes
    /// on at the size that worked; the next round starts at twice that (``BatchSizes``), so a
    /// size shrunk by a passing overload grows back, one failed try a round at most. A job's
    /// events go in the statement that deletes it, and a thousand jobs of many events each
    /// (10,000 an attempt at `JOB_EVENTS_LIMIT`'s default) took longer than the statement
    /// bound: the same batch failed every round, and nothing was ever deleted again.
    func sweep(_ status: JobStatus, olderThan keep: Duration) async {
        var total = 0
        var size = min(batchSize, sizes.current(status, default: batchSize) * 2)
        while !Task.isCancelled {
            do {
                guard let deleted = try await store.deleteFinished(status: status, olderThan: keep, limit: size) else { break }
                sizes.set(status, size)
                total += deleted
                if deleted < size { break }
                try await Task.sleep(for: .milliseconds(50))
            } catch where Task.isCancelled {
                // Shutdown: nothing failed (before, a sweep it cut short was logged and counted
                // as a store failure).
                break
            } catch where size > 1 {
                size /= 2
                logger.debug("Could not delete a batch of old jobs; trying a smaller one", metadata: [
                    "status": .string(status.rawValue), "batch": .stringConvertible(size), "error": "\(error)",
                ])
            } catch {
                // Counted with the other store failures, so that an alert on them covers a
                // retention that keeps failing (the table then grows without bound).
                WorkerMetrics.shared.storeError(operation: "retention")
                logger.warning("Could not delete old jobs", metadata: ["status": .string(status.rawValue), "error": "\(error)"])
                sizes.set(status, batchSize)
                break
            }
        }
        if total > 0 {
            logger.info("Deleted old jobs", metadata: [
                "status": .string(status.rawValue), "jobs": .stringConvertible(total), "olderThanDays": .stringConvertible(keep.inSeconds / 86_400),
                "batch": .stringConvertible(size),
            ])
        }
    }

    /// The batch size that last worked for each status, shared by the sweeper's copies.
    final class BatchSizes: Sendable {
        private let sizes = Mutex<[JobStatus: Int]>([:])

        func current(_ status: JobStatus, default size: Int) -> Int { sizes.withLock { $0[status] ?? size } }
        func set(_ status: JobStatus, _ size: Int) { sizes.withLock { $0[status] = size } }
    }
}
