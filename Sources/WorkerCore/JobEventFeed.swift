import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Tells the readers following jobs' events (the HTTP event stream) when their job has new
/// events: one store notification channel per worker (PostgreSQL LISTEN), whatever the number
/// of readers, fanned out to each reader's coalescing wake-up.
///
/// A reader holds no store connection while it waits, and its wake-ups cannot pile up: however
/// many notifications arrive, it is woken once and reads what is new from the store, at its own
/// pace. Where the store has no notifications (SQLite, a transaction pooler) or the channel is
/// down, readers poll every ``pollInterval``.
///
/// The channel is opened on the first subscription: a worker nobody follows holds no
/// connection for it.
public final class JobEventFeed: Service, Sendable {
    /// One reader's interest in one job.
    public final class Subscription: Sendable {
        public let jobID: UUID
        let key: UInt64
        let signal = WakeSignal()
        private let feed: JobEventFeed

        init(jobID: UUID, key: UInt64, feed: JobEventFeed) {
            self.jobID = jobID
            self.key = key
            self.feed = feed
        }

        /// Waits until the job may have new events, at most the feed's poll interval.
        public func wait() async {
            await signal.wait(timeout: feed.pollInterval)
        }

        /// Ends the current ``wait()`` at once (its reader has something else to look at).
        public func wake() {
            signal.signal()
        }

        /// Ends the subscription.
        public func cancel() {
            feed.remove(self)
        }
    }

    private struct State {
        var nextKey: UInt64 = 0
        var byJob: [UUID: [UInt64: Subscription]] = [:]
        var listening = false
        var wanted = false
    }

    private let store: any JobStore
    private let logger: Logger
    private let state = Mutex(State())
    private let firstSubscription = WakeSignal()

    public init(store: any JobStore, logger: Logger) {
        self.store = store
        self.logger = logger
    }

    /// How long a reader waits before it reads anyway: long while notifications arrive, short
    /// without them.
    public var pollInterval: Duration {
        state.withLock { $0.listening } ? .seconds(2) : .milliseconds(250)
    }

    public func subscribe(to jobID: UUID) -> Subscription {
        let (subscription, first) = state.withLock { state -> (Subscription, Bool) in
            state.nextKey += 1
            let subscription = Subscription(jobID: jobID, key: state.nextKey, feed: self)
            state.byJob[jobID, default: [:]][subscription.key] = subscription
            defer { state.wanted = true }
            return (subscription, !state.wanted)
        }
        if first { firstSubscription.signal() }
        return subscription
    }

    func remove(_ subscription: Subscription) {
        state.withLock { state in
            state.byJob[subscription.jobID]?[subscription.key] = nil
            if state.byJob[subscription.jobID]?.isEmpty == true { state.byJob[subscription.jobID] = nil }
        }
    }

    /// Wakes the readers of `jobs`.
    func wake(_ jobs: [UUID]) {
        let woken = state.withLock { state in jobs.flatMap { state.byJob[$0].map { Array($0.values) } ?? [] } }
        for subscription in woken { subscription.signal.signal() }
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            await self.firstSubscription.wait()
            var failures = 0
            while !Task.isCancelled {
                self.state.withLock { $0.listening = true }
                let started = ContinuousClock.now
                do {
                    try await self.store.watchEvents { [weak self] jobs in self?.wake(jobs) }
                    // No notifications here: readers poll.
                    self.state.withLock { $0.listening = false }
                    try? await Task.sleep(for: .seconds(365 * 86_400))
                    return
                } catch {
                    self.state.withLock { $0.listening = false }
                    if Task.isCancelled { return }
                    // A channel that lasted longer than the longest wait was up: count again
                    // from one (counted over the worker's life, each drop after the seventh
                    // waited the full 10 s).
                    failures = started.duration(to: .now) > .seconds(10) ? 1 : failures + 1
                    let delay = JobProcessor.backoff(failures: failures, cap: .seconds(10))
                    self.logger.warning("The job events channel failed; event streams poll meanwhile", metadata: [
                        "error": "\(error)", "retryInMs": .stringConvertible(delay.inMilliseconds),
                    ])
                    try? await Task.sleep(for: delay)
                }
            }
        }
    }
}
