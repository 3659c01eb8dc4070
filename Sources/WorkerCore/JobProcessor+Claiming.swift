import Foundation
import Logging
import Synchronization

/// The claim loop: as many jobs as there are free slots, in one store call, whenever the
/// processor is woken (a notification, a finished job, a retry falling due) or its poll timer
/// runs out.
extension JobProcessor {
    func claimLoop() async {
        var queueDrained = false
        var consecutiveFailures = 0
        /// Claims after a notification in a row that found nothing: other workers were faster.
        var lostRaces = 0
        var wokenByNotification = false
        while !Task.isCancelled {
            let (phase, free, stopped) = state.withLock { ($0.phase, claimableSlots($0), $0.claimsStopped) }
            guard phase == .running else { return }
            if stopped {
                // Until the processor's own shutdown (which wakes this) drains the jobs.
                await jobsAvailable.wait()
                continue
            }
            if free <= 0 {
                await slotFreed.wait()
                // Jobs tend to finish in bursts: gather a few more free slots so that one claim
                // fetches a batch instead of one job per round trip.
                if configuration.maxConcurrentJobs >= 4 {
                    let deadline = ContinuousClock.now + configuration.claimBatchWindow
                    while state.withLock({ claimableSlots($0) }) < configuration.maxConcurrentJobs / 2,
                          ContinuousClock.now < deadline {
                        await slotFreed.wait(timeout: deadline - .now)
                    }
                }
                continue
            }
            if queueDrained {
                // Sleep until woken, the poll interval, or a retry of ours falls due, whichever is first.
                let now = ContinuousClock.now
                let (retryFellDue, nextRetry) = state.withLock { state in
                    let before = state.retryDues.count
                    state.retryDues.removeAll { $0 <= now }
                    return (state.retryDues.count < before, state.retryDues.min())
                }
                if !retryFellDue {
                    let timeout = nextRetry.map { min(configuration.pollInterval, $0 - now) } ?? configuration.pollInterval
                    let woken = await jobsAvailable.wait(timeout: timeout)
                    metrics.wake(woken ? "notification" : "poll", queues: queueLabel)
                    wokenByNotification = woken
                    if state.withLock({ state in defer { state.sessionTurnsLetThrough = false }; return state.sessionTurnsLetThrough }) {
                        lostRaces = 0
                    }
                    if woken, lostRaces > 0 {
                        // Every idle worker hears every insert; one of them gets the job. A worker
                        // that lost the last races waits a little before it claims (notifications
                        // coalesce meanwhile), so that idle workers do not all claim on every
                        // insert; it claims at once again when it gets a job.
                        try? await Task.sleep(for: Self.notificationBackoff(lostRaces: lostRaces))
                    }
                }
                queueDrained = false
                continue
            }
            // The last jobs could not be run here (a full disk, a sandbox that stopped working):
            // leave the queue to the other workers for a while, then try one job.
            var limit = free
            if let fault = workerFault {
                logger.warning(
                    "Not claiming for a while: this worker could not run its last jobs",
                    metadata: ["jobs": .stringConvertible(fault.count), "error": .string(fault.error),
                               "pauseMs": .stringConvertible(configuration.workerFaultPause.inMilliseconds)])
                let deadline = ContinuousClock.now + configuration.workerFaultPause
                while state.withLock({ $0.phase }) == .running, ContinuousClock.now < deadline {
                    _ = await jobsAvailable.wait(timeout: deadline - .now)
                }
                guard state.withLock({ $0.phase }) == .running else { return }
                limit = 1
            }
            // Told to stop claiming while this loop waited.
            if state.withLock({ $0.claimsStopped }) { continue }
            do {
                let claimed = try await withTimeout(storeTimeout, operation: "claim") { [store, configuration, limit] in
                    try await store.claim(
                        queues: configuration.queues,
                        limit: limit,
                        workerID: configuration.workerID,
                        leaseDuration: configuration.leaseDuration
                    )
                }
                if consecutiveFailures > 0 {
                    consecutiveFailures = 0
                    state.withLock { $0.claimFailuresInARow = 0 }
                }
                queueDrained = claimed.count < limit
                if !claimed.isEmpty {
                    lostRaces = 0
                } else if wokenByNotification {
                    lostRaces += 1
                }
                wokenByNotification = false
                logger.trace("Claimed jobs", metadata: ["claimed": .stringConvertible(claimed.count), "free": .stringConvertible(free)])
                let stops = claimed.map { _ in StopSignal() }
                let superseded = state.withLock { state in
                    state.busy += claimed.count
                    return zip(claimed, stops).compactMap { job, stop in
                        state.insert(RunningJob(lease: job.lease, sessionID: job.job.sessionID, stop: stop))
                    }
                }
                // This worker took back a job whose earlier attempt it still runs: that attempt's
                // lease is gone (the claim is a new attempt), so it stops now rather than at the
                // next renewal.
                for stop in superseded { stop.trigger(.leaseLost) }
                var claimedPerQueue: [String: Int] = [:]
                for job in claimed { claimedPerQueue[job.job.queue, default: 0] += 1 }
                for (queue, count) in claimedPerQueue { metrics.claimed(queue: queue, count: count) }
                logStarts(claimed)
                for (job, stop) in zip(claimed, stops) { start(job, stop: stop) }
                if !claimed.isEmpty { updateSlotGauges() }
            } catch {
                consecutiveFailures += 1
                state.withLock { $0.claimFailuresInARow = consecutiveFailures }
                metrics.storeError(operation: "claim")
                let delay = Self.backoff(failures: consecutiveFailures, cap: configuration.pollInterval)
                logger.error(
                    "Failed to claim jobs",
                    metadata: ["error": "\(error)", "retryInMs": .stringConvertible(delay.inMilliseconds)]
                )
                // The whole delay, whatever arrives meanwhile: woken by every insert's
                // notification, a claim that fails at once (a privilege taken away, too many
                // connections) was tried again for each one, on a database already in trouble.
                let deadline = ContinuousClock.now + delay
                while state.withLock({ $0.phase == .running && !$0.claimsStopped }), ContinuousClock.now < deadline {
                    _ = await jobsAvailable.wait(timeout: deadline - .now)
                }
            }
        }
    }

    /// How long a worker that lost `lostRaces` claims in a row to other workers waits after a
    /// notification before it claims: 1 ms, doubling up to 32 ms.
    static func notificationBackoff(lostRaces: Int) -> Duration {
        .milliseconds(1 << min(max(lostRaces - 1, 0), 5))
    }
}
