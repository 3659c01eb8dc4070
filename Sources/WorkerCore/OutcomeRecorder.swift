import Logging
import Synchronization

/// Writes job outcomes to the store in batches (group commit), retrying while the store is
/// unreachable, so that completions are never lost to an outage.
///
/// Outcomes submitted while a write is in flight are written together by the next one, so a
/// busy worker makes one round trip for many jobs and an idle one adds no delay.
final class OutcomeRecorder: Sendable {
    private struct Pending {
        var completion: JobCompletion
        var continuation: CheckedContinuation<Bool?, Never>
    }

    private struct State {
        var pending: [Pending] = []
        var abandoned = false
    }

    private let store: any JobStore
    private let logger: Logger
    private let maximumBatch: Int
    private let timeout: Duration
    private let state = Mutex(State())
    private let available = WakeSignal()

    init(store: any JobStore, logger: Logger, timeout: Duration, maximumBatch: Int = 500) {
        self.store = store
        self.timeout = max(timeout, .seconds(5))
        self.logger = logger
        self.maximumBatch = maximumBatch
    }

    /// Records `completion`; returns whether it was applied (`false`: the lease was lost), or
    /// `nil` when it could not be written before the recorder gave up (the job then returns to
    /// the queue when its lease expires).
    func record(_ completion: JobCompletion) async -> Bool? {
        await withCheckedContinuation { continuation in
            let accepted = state.withLock { state -> Bool in
                guard !state.abandoned else { return false }
                state.pending.append(Pending(completion: completion, continuation: continuation))
                return true
            }
            if accepted { available.signal() } else { continuation.resume(returning: nil) }
        }
    }

    /// Gives up on everything not yet written (shutdown with the store unreachable).
    func abandon() {
        let pending = state.withLock { state -> [Pending] in
            state.abandoned = true
            defer { state.pending = [] }
            return state.pending
        }
        if !pending.isEmpty {
            logger.error(
                "Could not record job outcomes; these jobs return to the queue when their leases expire",
                metadata: ["jobs": .stringConvertible(pending.count)]
            )
        }
        for item in pending { item.continuation.resume(returning: nil) }
    }

    /// Writes batches until cancelled; then gives up on what is left.
    func run() async {
        defer { abandon() }
        var failures = 0
        while !Task.isCancelled {
            let batch = state.withLock { state -> [Pending] in
                let count = min(state.pending.count, maximumBatch)
                defer { state.pending.removeFirst(count) }
                return Array(state.pending.prefix(count))
            }
            if batch.isEmpty {
                await available.wait()
                continue
            }
            do {
                logger.trace("Recording job outcomes", metadata: ["jobs": .stringConvertible(batch.count)])
                let completions = batch.map(\.completion)
                let applied = try await withTimeout(timeout, operation: "recording outcomes") { [store] in
                    try await store.record(completions)
                }
                failures = 0
                for (index, item) in batch.enumerated() {
                    item.continuation.resume(returning: index < applied.count ? applied[index] : false)
                }
            } catch {
                // Put the batch back in front and retry after a pause.
                let abandoned = state.withLock { state -> Bool in
                    if state.abandoned { return true }
                    state.pending.insert(contentsOf: batch, at: 0)
                    return false
                }
                if abandoned {
                    for item in batch { item.continuation.resume(returning: nil) }
                    return
                }
                failures += 1
                WorkerMetrics.shared.storeError(operation: "record")
                let delay = JobProcessor.backoff(failures: failures, cap: .seconds(5))
                logger.warning(
                    "Could not record job outcomes, retrying",
                    metadata: ["error": "\(error)", "jobs": .stringConvertible(batch.count), "retryInMs": .stringConvertible(delay.inMilliseconds)]
                )
                do { try await Task.sleep(for: delay) } catch { return }
            }
        }
    }
}
