import Logging
import Synchronization

/// Writes the events of all running jobs to the store in batches, in the order they were
/// emitted, retrying while the store is unreachable (docs/WORKER_SERVICE.md, "Job events").
///
/// - One write at a time, of everything waiting (up to `maximumBatch`): a busy worker makes one
///   round trip for the lines of many jobs, an idle one adds no delay.
/// - The buffer is bounded (`capacityBytes`): an emitter waits while it is full, so a command
///   flooding its output is read no faster than its events are written (the pipe fills and the
///   command waits), and the worker's memory stays bounded.
/// - Each event gets a ticket, its place in the write order: ``written(through:)`` returns once
///   every event up to a ticket is stored (or given up on), which is how a job's outcome is
///   written only after all its events.
final class JobEventRecorder: Sendable {
    private struct State {
        /// Emitted and not yet written (in-flight ones are taken out and put back on failure).
        var pending: [NewJobEvent] = []
        var bufferedBytes = 0
        /// The ticket of the last event emitted; of the last one written or given up on.
        var lastTicket: UInt64 = 0
        var writtenThrough: UInt64 = 0
        var writeWaiters: [(ticket: UInt64, continuation: CheckedContinuation<Void, Never>)] = []
        var spaceWaiters: [CheckedContinuation<UInt64?, Never>] = []
        var abandoned = false
        /// Attempts whose earlier events were lost (``RefusedEvents/brokenStreams``): their later
        /// events are dropped unwritten. Only a database failure adds one (a few at a time).
        var broken: Set<Lease> = []
        /// When the writes began to fail, without a write that worked since (`nil`: the last
        /// one worked).
        var failingSince: ContinuousClock.Instant?
    }

    private let store: any JobStore
    private let logger: Logger
    private let timeout: Duration
    private let maximumBatch: Int
    let capacityBytes: Int
    private let state = Mutex(State())
    private let available = WakeSignal()

    init(store: any JobStore, logger: Logger, timeout: Duration, maximumBatch: Int = 2_000, capacityBytes: Int = 16 << 20) {
        self.store = store
        self.logger = logger
        self.timeout = max(timeout, .seconds(5))
        self.maximumBatch = maximumBatch
        self.capacityBytes = capacityBytes
    }

    /// How long the writes have failed without one that worked (`nil`: the last one worked, or
    /// none was needed). Jobs wait for their events before their outcome, and while the buffer
    /// is full for room in it, so a worker whose event writes keep failing makes no progress.
    var failingFor: Duration? {
        state.withLock { $0.failingSince }.map { .now - $0 }
    }

    /// Queues an event of `stream` with its next sequence number, waiting first while the
    /// buffer is full. Returns its ticket, or `nil` when the recorder has given up
    /// (shutdown with the store unreachable): the event is not written.
    func append(to stream: JobEventStream, kind: JobEvent.Kind, data: String) async -> UInt64? {
        let size = NewJobEvent.bufferedBytes(data: data)
        while true {
            let ticket = await withCheckedContinuation { (continuation: CheckedContinuation<UInt64?, Never>) in
                let answer = state.withLock { state -> UInt64?? in
                    if state.abandoned { return .some(nil) }
                    // One event is always let in, however big, so that an event never waits forever.
                    guard state.bufferedBytes == 0 || state.bufferedBytes + size <= capacityBytes else {
                        state.spaceWaiters.append(continuation)
                        return nil
                    }
                    state.lastTicket += 1
                    state.bufferedBytes += size
                    state.pending.append(NewJobEvent(lease: stream.lease, sequence: stream.takeSequence(), kind: kind, data: data))
                    return .some(state.lastTicket)
                }
                if let answer { continuation.resume(returning: answer) }
            }
            // A waiter resumed for space it may have lost to another emitter: try again.
            if let ticket {
                available.signal()
                return ticket
            }
            if state.withLock({ $0.abandoned }) { return nil }
        }
    }

    /// Returns once every event up to `ticket` is written, refused with its job's lease, or
    /// given up on. Not cancellable: the caller writes the job's outcome after it.
    func written(through ticket: UInt64) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = state.withLock { state -> Bool in
                if state.writtenThrough >= ticket || state.abandoned { return true }
                state.writeWaiters.append((ticket, continuation))
                return false
            }
            if done { continuation.resume() }
        }
    }

    /// Gives up on the events not yet written (shutdown with the store unreachable).
    func abandon() {
        let (count, waiters, spaceWaiters) = state.withLock { state in
            state.abandoned = true
            let count = state.pending.count
            state.pending = []
            state.bufferedBytes = 0
            state.writtenThrough = state.lastTicket
            defer { state.writeWaiters = []; state.spaceWaiters = [] }
            return (count, state.writeWaiters.map(\.continuation), state.spaceWaiters)
        }
        if count > 0 {
            logger.error("Could not write job events; they are lost", metadata: ["events": .stringConvertible(count)])
        }
        for waiter in waiters { waiter.resume() }
        for waiter in spaceWaiters { waiter.resume(returning: nil) }
    }

    /// Writes batches until cancelled; then gives up on what is left. `onBrokenStreams` hears of
    /// attempts whose earlier events the store does not have (their later events, and their
    /// outcome, would leave a gap): the processor gives them up. `onLostLeases` hears of attempts
    /// whose lease the store says is no longer theirs (rescued and perhaps running elsewhere):
    /// the processor stops them, as it does when a renewal says so.
    func run(
        onBrokenStreams: @escaping @Sendable (Set<Lease>) -> Void = { _ in }, onLostLeases: @escaping @Sendable (Set<Lease>) -> Void = { _ in }
    ) async {
        defer { abandon() }
        var failures = 0
        while !Task.isCancelled {
            let batch = state.withLock { $0.pending.removeBatch(upTo: maximumBatch) }
            if batch.isEmpty {
                await available.wait()
                continue
            }
            do {
                try await write(batch, onBrokenStreams: onBrokenStreams, onLostLeases: onLostLeases)
                failures = 0
                finish(batch)
            } catch {
                let abandoned = state.withLock { state -> Bool in
                    if state.abandoned { return true }
                    state.pending.insert(contentsOf: batch, at: 0)
                    if state.failingSince == nil { state.failingSince = .now }
                    return false
                }
                if abandoned { return }
                failures += 1
                WorkerMetrics.shared.storeError(operation: "events")
                let delay = JobProcessor.backoff(failures: failures, cap: .seconds(5))
                logger.warning("Could not write job events, retrying", metadata: [
                    "error": "\(error)", "events": .stringConvertible(batch.count), "retryInMs": .stringConvertible(delay.inMilliseconds),
                ])
                do { try await Task.sleep(for: delay) } catch { return }
            }
        }
    }

    /// Writes `batch`; an event the database refuses for its value is stored as a note saying
    /// so instead (it never holds the others back). Throws on any other failure (an outage).
    private func write(
        _ batch: [NewJobEvent], onBrokenStreams: @Sendable (Set<Lease>) -> Void, onLostLeases: @Sendable (Set<Lease>) -> Void
    ) async throws {
        // The events of attempts already given up are dropped (they would be refused).
        let broken = state.withLock { $0.broken }
        let kept = broken.isEmpty ? batch : batch.filter { !broken.contains($0.lease) }
        var work: [(chunk: [NewJobEvent], isNote: Bool)] = kept.isEmpty ? [] : [(kept, false)]
        while let (chunk, isNote) = work.first {
            work.removeFirst()
            do {
                let refused = try await withTimeout(timeout, operation: "writing job events") { [store] in
                    try await store.appendEvents(chunk)
                }
                WorkerMetrics.shared.eventsWritten(refused.isEmpty ? chunk.count : chunk.count { !refused.all.contains($0.lease) })
                if !refused.brokenStreams.isEmpty {
                    state.withLock { $0.broken.formUnion(refused.brokenStreams) }
                    for lease in refused.brokenStreams {
                        logger.error(
                            "Job events lost: an earlier write of this attempt's events was answered but never committed (the database stopped or failed its commit); the attempt is given up and the job runs again when its lease runs out",
                            metadata: [
                                "jobId": .string(lease.jobID.lowercasedText), "attempt": .stringConvertible(lease.attempt),
                                "refusedFromSequence": .stringConvertible(chunk.first { $0.lease == lease }?.sequence ?? 0),
                            ])
                    }
                    onBrokenStreams(refused.brokenStreams)
                }
                for lease in refused.lostLeases {
                    // Rare (a rescue or a cancel came first): said, since a reader sees a gap.
                    logger.warning("Job events not stored: the attempt's lease is no longer held", metadata: [
                        "jobId": .string(lease.jobID.lowercasedText), "attempt": .stringConvertible(lease.attempt),
                        "events": .stringConvertible(chunk.count { $0.lease == lease }),
                        "sequences": .string(chunk.filter { $0.lease == lease }.map { String($0.sequence) }.joined(separator: ",")),
                    ])
                }
                // Proof the lease is gone (while renewals fail, the only one): before, the
                // attempt ran on beside the one another worker had claimed.
                if !refused.lostLeases.isEmpty { onLostLeases(refused.lostLeases) }
            } catch JobStoreError.valueRejected(let reason) where !isNote {
                if chunk.count > 1 {
                    let half = chunk.count / 2
                    work.insert(contentsOf: [(Array(chunk[..<half]), false), (Array(chunk[half...]), false)], at: 0)
                    continue
                }
                // Alone and refused: its place in the sequence keeps a note instead.
                var note = chunk[0]
                WorkerMetrics.shared.eventReplaced()
                note.data = #"{"refused":"# + JSONText.quoted("the database refused this event: \(reason)") + "}"
                if note.kind != .status { note.kind = .log }
                work.insert(([note], true), at: 0)
            }
        }
    }

    /// `batch` is stored: its room in the buffer is given back, the writes are no longer
    /// failing (``failingFor``), and whoever waited for these events goes on.
    private func finish(_ batch: [NewJobEvent]) {
        let (waiters, spaceWaiters) = state.withLock { state in
            state.failingSince = nil
            state.writtenThrough += UInt64(batch.count)
            state.bufferedBytes -= batch.reduce(0) { $0 + NewJobEvent.bufferedBytes(data: $1.data) }
            let through = state.writtenThrough
            var ready: [CheckedContinuation<Void, Never>] = []
            state.writeWaiters.removeAll { waiter in
                guard waiter.ticket <= through else { return false }
                ready.append(waiter.continuation)
                return true
            }
            defer { state.spaceWaiters = [] }
            return (ready, state.spaceWaiters)
        }
        for waiter in waiters { waiter.resume() }
        for waiter in spaceWaiters { waiter.resume(returning: nil) }
    }
}
