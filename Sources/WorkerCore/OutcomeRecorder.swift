import Logging
import Synchronization

/// Writes job outcomes to the store in batches (group commit), retrying while the store is
/// unreachable, so that completions are never lost to an outage.
///
/// Outcomes submitted while a write is in flight are written together by the next one, so a
/// busy worker makes one round trip for many jobs and an idle one adds no delay.
///
/// One outcome the database refuses for its values (``JobStoreError/valueRejected(_:)``: a NUL
/// byte, an oversized result) never blocks the others: the refused batch is split in halves
/// until that outcome is alone, which is then written in its storable form
/// (``JobOutcome/storable()``), or as a failed attempt if even that is refused.
final class OutcomeRecorder: Sendable {
    private struct State {
        var pending: [JobCompletion] = []
        var abandoned = false
    }

    /// What one write did: the outcomes written (in their final form) and what became of each,
    /// the outcomes given up on, and those still to write after a store failure.
    private struct Progress {
        var written: [JobCompletion] = []
        var writes: [OutcomeWrite] = []
        var givenUp: [JobCompletion] = []
        var unwritten: [JobCompletion] = []
        var failure: (any Error)?
    }

    /// How far an outcome the store refused has been made storable.
    private enum Form {
        case asSubmitted, storable, failedAttempt
    }

    private let store: any JobStore
    private let logger: Logger
    private let maximumBatch: Int
    private let timeout: Duration
    private let state = Mutex(State())
    private let available = WakeSignal()
    private let failing = Atomic<Bool>(false)

    /// Whether the last write failed for a reason other than a refused value (the store is
    /// unreachable or refuses this worker's writes); `false` again after a write succeeds.
    var isFailing: Bool { failing.load(ordering: .relaxed) }

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
    /// `onRecorded` gets every batch once it is written, with what became of each outcome, or
    /// with `nil` for outcomes given up on. When more outcomes are waiting, their write starts
    /// first and `onRecorded` runs while it is in flight, so that finishing a batch (its log
    /// lines) does not hold the next write back.
    func run(onRecorded: @escaping @Sendable ([JobCompletion], _ writes: [OutcomeWrite]?) -> Void) async {
        /// A written batch not yet handed to `onRecorded`.
        var written: (batch: [JobCompletion], writes: [OutcomeWrite])?
        defer {
            if let written { onRecorded(written.batch, written.writes) }
            let left = abandon()
            if !left.isEmpty { onRecorded(left, nil) }
        }
        var failures = 0
        while !Task.isCancelled {
            let batch = state.withLock { $0.pending.removeBatch(upTo: maximumBatch) }
            if batch.isEmpty {
                if let done = written {
                    written = nil
                    onRecorded(done.batch, done.writes)
                    continue
                }
                await available.wait()
                continue
            }
            logger.trace("Recording job outcomes", metadata: ["jobs": .stringConvertible(batch.count)])
            async let writing = write(batch)
            if let done = written {
                written = nil
                onRecorded(done.batch, done.writes)
            }
            let progress = await writing
            if !progress.written.isEmpty { written = (progress.written, progress.writes) }
            if !progress.givenUp.isEmpty { onRecorded(progress.givenUp, nil) }
            guard let error = progress.failure else {
                failures = 0
                failing.store(false, ordering: .relaxed)
                continue
            }
            failing.store(true, ordering: .relaxed)
            // Put what is left back in front and retry after a pause.
            let abandoned = state.withLock { state -> Bool in
                if state.abandoned { return true }
                state.pending.insert(contentsOf: progress.unwritten, at: 0)
                return false
            }
            if abandoned {
                onRecorded(progress.unwritten, nil)
                return
            }
            failures += 1
            WorkerMetrics.shared.storeError(operation: "record")
            let delay = JobProcessor.backoff(failures: failures, cap: .seconds(5))
            logger.warning(
                "Could not record job outcomes, retrying",
                metadata: [
                    "error": "\(error)", "jobs": .stringConvertible(progress.unwritten.count),
                    "retryInMs": .stringConvertible(delay.inMilliseconds),
                ]
            )
            do { try await Task.sleep(for: delay) } catch { return }
        }
    }

    /// Ends the leases of jobs cancelled while their outcome was on its way: the cancel kept the
    /// lease until the command stopped, which it has (its handler returned). Without this the
    /// lease, no longer renewed, held the job (no retry) and its session (no next turn) until it
    /// ran out and the rescue came: up to a lease and a rescue interval, 45 s by default.
    ///
    /// First, in the place of each attempt's refused ending event, a `cancelled` one (the lease
    /// still holds): the attempt's events end with how it ended, as every attempt's do.
    private func release(_ completions: [JobCompletion]) async {
        let leases = completions.map(\.lease)
        let endings = completions.compactMap { completion in
            completion.event.map {
                NewJobEvent(
                    lease: completion.lease, sequence: $0.sequence, kind: .status,
                    data: JobEventStream.statusData("cancelled", ["refusedOutcome": JSONText.quoted(completion.outcome.name)]))
            }
        }
        if !endings.isEmpty {
            _ = try? await withTimeout(timeout, operation: "cancellation events") { [store] in try await store.appendEvents(endings) }
        }
        await endLeasesIfCancelled(leases)
    }

    /// Writes `batch`, isolating outcomes the store refuses for their values; stops at the
    /// first failure of another kind (an outage), reporting what is still unwritten.
    private func write(_ batch: [JobCompletion]) async -> Progress {
        var progress = Progress()
        // Chunks still to write, first one next. A result over the worker's size bound would be
        // refused (or strain the database); it goes in its storable form from the start.
        var bounded = batch
        for index in bounded.indices {
            guard case .completed(let result) = bounded[index].outcome, result.utf8.count > JobOutcome.maximumResultBytes else { continue }
            WorkerMetrics.shared.outcomeMadeStorable()
            bounded[index].outcome = bounded[index].outcome.storable()
        }
        var work: [(chunk: [JobCompletion], form: Form)] = [(bounded, .asSubmitted)]
        while !work.isEmpty {
            let (chunk, form) = work.removeFirst()
            do {
                let applied = try await withTimeout(timeout, operation: "recording outcomes") { [store] in
                    try await store.record(chunk)
                }
                progress.written += chunk
                var cancelled: [JobCompletion] = []
                var unexplained: [Lease] = []
                for (index, completion) in chunk.enumerated() {
                    let write: OutcomeWrite
                    if index < applied.count && applied[index] {
                        write = .applied
                    } else if let explained = await explain(completion) {
                        write = explained
                    } else {
                        // Unknown: said as a lost lease, as the write changed nothing.
                        write = .leaseLost
                        unexplained.append(completion.lease)
                    }
                    if write == .cancelled { cancelled.append(completion) }
                    progress.writes.append(write)
                }
                if !cancelled.isEmpty { await release(cancelled) }
                if !unexplained.isEmpty { await endLeasesIfCancelled(unexplained) }
            } catch JobStoreError.valueRejected(let reason) {
                if chunk.count > 1 {
                    let half = chunk.count / 2
                    work.insert(contentsOf: [(Array(chunk[..<half]), .asSubmitted), (Array(chunk[half...]), .asSubmitted)], at: 0)
                    continue
                }
                let completion = chunk[0]
                let metadata = JobContext.metadata(jobID: completion.lease.jobID, sessionID: nil, attempt: completion.lease.attempt)
                switch form {
                case .asSubmitted:
                    WorkerMetrics.shared.outcomeMadeStorable()
                    logger.warning(
                        "The database refused a job's outcome; storing it with the refused values removed",
                        metadata: metadata.merging(["reason": .string(reason)]) { $1 }
                    )
                    work.insert(([JobCompletion(lease: completion.lease, outcome: completion.outcome.storable(), event: completion.event, usage: completion.usage)], .storable), at: 0)
                case .storable:
                    logger.error(
                        "The database refused a job's outcome even with the refused values removed; failing the attempt",
                        metadata: metadata.merging(["reason": .string(reason)]) { $1 }
                    )
                    let message = JobOutcome.storableError("the job's outcome could not be stored: the database refused it (\(reason))")
                    let failure = JobOutcome.failed(error: message)
                    // Its ending event says the same (the one made for the refused outcome may hold the refused value).
                    let event = completion.event.map {
                        JobCompletion.FinalEvent(sequence: $0.sequence, data: JobEventStream.statusData("failed", ["error": JSONText.quoted(message)]))
                    }
                    work.insert(([JobCompletion(lease: completion.lease, outcome: failure, event: event, usage: completion.usage)], .failedAttempt), at: 0)
                case .failedAttempt:
                    logger.error(
                        "The database refused to record a job as failed; it returns to the queue when its lease expires",
                        metadata: metadata.merging(["reason": .string(reason)]) { $1 }
                    )
                    progress.givenUp.append(completion)
                }
            } catch {
                progress.unwritten = chunk + work.flatMap(\.chunk)
                progress.failure = error
                return progress
            }
        }
        return progress
    }

    /// Why an outcome was not applied, from the job as it is now (a rare path: a cancel, a
    /// rescue, or a write whose answer was lost); `nil` when the job could not be read.
    ///
    /// The read is tried a few times: it comes right after a write, often in the same trouble
    /// (a connection reset, a slow database). Before, one failed read counted as the job being
    /// gone: a cancelled session turn's lease was not ended (its session's next turn waited for
    /// the lease to run out and the rescue), and an outcome a lost answer had applied was
    /// logged as discarded.
    private func explain(_ completion: JobCompletion) async -> OutcomeWrite? {
        for attempt in 1...Self.explainAttempts {
            do {
                let job = try await withTimeout(timeout, operation: "reading a job") { [store] in
                    try await store.job(id: completion.lease.jobID)
                }
                return OutcomeWrite(explaining: completion, current: job)
            } catch {
                guard attempt < Self.explainAttempts else {
                    logger.warning(
                        "Could not read a job whose outcome was not applied; if it was cancelled, its lease is ended all the same",
                        metadata: JobContext.metadata(jobID: completion.lease.jobID, sessionID: nil, attempt: completion.lease.attempt)
                            .merging(["error": "\(error)"]) { $1 })
                    return nil
                }
                try? await Task.sleep(for: JobProcessor.backoff(failures: attempt, cap: .seconds(1)))
            }
        }
        return nil
    }

    /// How many times ``explain(_:)`` reads the job (over about 1.5 s).
    static let explainAttempts = 5

    /// Ends the leases of those of `leases` whose job was cancelled, not knowing which were
    /// (``JobStore/releaseCancelled(_:)`` changes only a cancelled job still under that lease).
    private func endLeasesIfCancelled(_ leases: [Lease]) async {
        do {
            try await withTimeout(timeout, operation: "cancellation release") { [store] in
                try await store.releaseCancelled(leases)
            }
        } catch {
            logger.warning(
                "Could not tell the store that cancelled jobs stopped; they are free when their leases run out",
                metadata: ["jobs": .stringConvertible(leases.count), "error": "\(error)"]
            )
        }
    }
}
