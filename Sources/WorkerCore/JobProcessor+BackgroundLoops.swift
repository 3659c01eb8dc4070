import Foundation
import Logging
import Synchronization

/// The loops beside the claim loop: store notifications, lease renewal and the rescue of
/// expired leases.
extension JobProcessor {
    func watchStore() async {
        var failures = 0
        while !Task.isCancelled {
            let progress = WatchProgress()
            let started = ContinuousClock.now
            do {
                try await store.watch(queues: configuration.queues) { event in
                    progress.heard.store(true, ordering: .relaxed)
                    switch event {
                    case .jobsAvailable:
                        self.jobsAvailable.signal()
                    case .jobCancelled(let id):
                        self.state.withLock { $0.running[id]?.stop }?.trigger(.cancelled)
                    }
                }
                return
            } catch {
                if Task.isCancelled { return }
                // A watch that listened for a while was up: its failure starts the count again.
                // (Counted over the worker's life, every drop after the tenth, days apart,
                // waited the full 30 s before listening again.) One dropped as soon as it
                // listened (a proxy that ends every connection) still backs off.
                let wasUp = progress.heard.load(ordering: .relaxed) && started.duration(to: .now) >= Self.watchUpAfter
                failures = wasUp ? 1 : failures + 1
                metrics.notificationReconnect()
                let delay = Self.backoff(failures: failures, cap: .seconds(30))
                logger.warning(
                    "Job notifications unavailable, polling meanwhile",
                    metadata: ["error": "\(error)", "retryInMs": .stringConvertible(delay.inMilliseconds)]
                )
                try? await Task.sleep(for: delay)
            }
        }
    }

    func renewLeases() async {
        let interval = configuration.leaseDuration / 3
        var failures = 0
        while !Task.isCancelled {
            // After a failure, again soon (and sooner than a lease runs out): the next try is on
            // a new connection if that one stopped answering.
            let pause = failures == 0 ? interval : min(interval, Self.backoff(failures: failures, cap: interval) * 5)
            do { try await Task.sleep(for: pause) } catch { return }
            let now = ContinuousClock.now
            let running = state.withLock { $0.running }.filter { !isGivenUp($0.value, now: now) }
            guard !running.isEmpty else {
                // Nothing to renew: nothing at stake either.
                state.withLock { $0.renewalsFailingSince = nil }
                continue
            }
            do {
                let leases = running.values.map(\.lease)
                let states = try await withTimeout(configuration.renewalTimeout, operation: "lease renewal") { [store, configuration] in
                    try await store.renew(leases, duration: configuration.leaseDuration)
                }
                failures = 0
                state.withLock { $0.renewalsFailingSince = nil }
                for (id, leaseState) in states where leaseState != .held {
                    running[id]?.stop.trigger(leaseState == .cancelled ? .cancelled : .leaseLost)
                }
            } catch {
                failures += 1
                state.withLock { if $0.renewalsFailingSince == nil { $0.renewalsFailingSince = now } }
                metrics.storeError(operation: "renew")
                logger.warning("Lease renewal failed", metadata: ["error": "\(error)", "runningJobs": .stringConvertible(running.count)])
            }
        }
    }

    func rescueExpiredLeases() async {
        while !Task.isCancelled {
            do {
                // Jobs this worker holds are spared: it is alive, so their lease ran out only
                // because a renewal came late, and the next renewal revives it. (Jobs it gave up
                // on are not: see isGivenUp(_:now:).)
                let now = ContinuousClock.now
                let running = state.withLock { $0.running.filter { !isGivenUp($0.value, now: now) }.map(\.key) }
                let rescued = try await withTimeout(storeTimeout, operation: "rescue") { [store] in
                    try await store.rescueExpiredLeases(sparing: running)
                }
                for job in rescued {
                    // The sweep rescues every queue's jobs, not only ours: a foreign queue's name
                    // would be a label from an unbounded source.
                    metrics.rescued(queue: servedQueues.contains(job.queue) ? job.queue : QueueDepthSelection.otherLabel)
                    logger.warning(
                        "Rescued job with expired lease",
                        metadata: [
                            "jobId": .string(job.id.lowercasedText),
                            "sessionId": .string(job.sessionID?.lowercasedText ?? ""),
                            "previousWorker": .string(job.previousWorker ?? ""),
                            "attempt": .stringConvertible(job.attempt),
                            "newStatus": .string(job.newStatus.rawValue),
                        ]
                    )
                }
                if rescued.contains(where: { $0.newStatus == .pending }) { jobsAvailable.signal() }
            } catch {
                metrics.storeError(operation: "rescue")
                logger.warning("Could not rescue expired leases", metadata: ["error": "\(error)"])
            }
            do { try await Task.sleep(for: configuration.rescueInterval) } catch { return }
        }
    }
}

extension JobProcessor {
    /// How long a watch must have listened for its failure to count as the first of a new run.
    static let watchUpAfter = Duration.seconds(1)
}

/// Whether one watch of the store got as far as listening: a store reports jobs as soon as it
/// listens (they may have arrived while it did not), so anything heard means it did.
private final class WatchProgress: Sendable {
    let heard = Atomic<Bool>(false)
}
