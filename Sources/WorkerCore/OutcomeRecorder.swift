import Logging
import Synchronization

/// Writes job outcomes to the store in batches (group commit), retrying while the store is
/// unreachable, so that completions are never lost to an outage.
///
/// Outcomes submitted while a write is in flight are written together by the next one, so a
/// busy worker makes one round trip for many jobs and an idle one adds no delay.
final class OutcomeRecorder: Sendable {
    private struct State {
        var pending: [JobCompletion] = []
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

    /// Queues `completion` for the next write. Returns `false` when the recorder has given up
    /// (``abandon()``): the outcome will not be written, and the job returns to the queue when
    /// its lease expires.
    ///
    /// The submitting job does not wait: `run(onRecorded:)` reports each written batch, so a
    /// job costs no suspension and no wake-up of its own.
    func submit(_ completion: JobCompletion) -> Bool {
        let accepted = state.withLock { state -> Bool in
            guard !state.abandoned else { return false }
            state.pending.append(completion)
            return true
        }
        if accepted { available.signal() }
        return accepted
    }

    /// Gives up on everything not yet written (shutdown with the store unreachable) and returns it.
    func abandon() -> [JobCompletion] {
        let pending = state.withLock { state -> [JobCompletion] in
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
        return pending
    }

    /// Writes batches until cancelled; then gives up on what is left.
    ///
    /// `onRecorded` gets every batch once it is written, with whether each outcome was applied
    /// (`false`: the lease was lost), or with `nil` for outcomes given up on. When more outcomes
    /// are waiting, their write starts first and `onRecorded` runs while it is in flight, so that
    /// finishing a batch (its log lines) does not hold the next write back.
    func run(onRecorded: @escaping @Sendable ([JobCompletion], _ applied: [Bool]?) -> Void) async {
        /// A written batch not yet handed to `onRecorded`.
        var written: (batch: [JobCompletion], applied: [Bool])?
        defer {
            if let written { onRecorded(written.batch, written.applied) }
            let left = abandon()
            if !left.isEmpty { onRecorded(left, nil) }
        }
        var failures = 0
        while !Task.isCancelled {
            let batch = state.withLock { state -> [JobCompletion] in
                if state.pending.count <= maximumBatch {
                    defer { state.pending = [] }
                    return state.pending
                }
                defer { state.pending.removeFirst(maximumBatch) }
                return Array(state.pending.prefix(maximumBatch))
            }
            if batch.isEmpty {
                if let done = written {
                    written = nil
                    onRecorded(done.batch, done.applied)
                    continue
                }
                await available.wait()
                continue
            }
            do {
                logger.trace("Recording job outcomes", metadata: ["jobs": .stringConvertible(batch.count)])
                async let write = withTimeout(timeout, operation: "recording outcomes") { [store] in
                    try await store.record(batch)
                }
                if let done = written {
                    written = nil
                    onRecorded(done.batch, done.applied)
                }
                let applied = try await write
                failures = 0
                written = (batch, applied.count == batch.count ? applied : batch.indices.map { $0 < applied.count && applied[$0] })
            } catch {
                // Put the batch back in front and retry after a pause.
                let abandoned = state.withLock { state -> Bool in
                    if state.abandoned { return true }
                    state.pending.insert(contentsOf: batch, at: 0)
                    return false
                }
                if abandoned {
                    onRecorded(batch, nil)
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
