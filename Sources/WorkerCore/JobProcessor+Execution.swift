import Foundation
import Logging
import Synchronization

/// Running one job: its handler in a task of its own, its outcome handed to the recorder, and
/// the job finished (logged, its entry freed) once the outcome is written.
extension JobProcessor {
    /// Starts `claimed` in a task of its own, which its stop signal cancels: an operator's cancel,
    /// a lost lease or the shutdown timeout stops this job alone (a child of a task group cannot
    /// be cancelled on its own). The task ends once the outcome is handed to the recorder;
    /// ``recorded(_:writes:)`` finishes the job after the write.
    func start(_ claimed: ClaimedJob, stop: StopSignal) {
        stop.cancels(Task { await self.execute(claimed, stop: stop) })
    }

    /// Logs the start of each of a claim's jobs, their lines written together (``LogLineBatch``),
    /// before their tasks start (which would otherwise inherit the batch).
    func logStarts(_ claimed: [ClaimedJob]) {
        guard logger.logLevel <= .info else { return }
        LogLineBatch.collecting {
            for claimed in claimed {
                let job = claimed.job
                logger.info("Processing job", metadata: Self.metadata(of: claimed.lease, sessionID: job.sessionID, extra: [
                    "queue": .string(job.queue), "maxAttempts": .stringConvertible(job.maxAttempts),
                ]))
            }
        }
    }

    func execute(_ claimed: ClaimedJob, stop: StopSignal) async {
        let job = claimed.job
        // The claim stored the `claimed` event; the handler's events number on from it.
        let events = JobEventStream(
            lease: claimed.lease, lastSequence: claimed.lastEventSequence, limits: configuration.eventLimits, recorder: eventRecorder)
        let clock = ContinuousClock()
        let start = clock.now
        let context = JobContext(processor: contextBase, job: claimed, events: events)
        let result: Result<String, any Error>
        do {
            result = .success(try await handler.handle(claimed, context: context))
        } catch {
            result = .failure(error)
        }
        let finish: Finish
        switch (result, stop.reason) {
        case (_, nil), (.success, .shutdown?):
            // Work that finished is recorded, even when the shutdown timeout came just after it.
            finish = .handled(result)
        case (_, let reason?):
            finish = .stopped(reason)
        }
        let end = clock.now
        let elapsed = end - start
        state.withLock { state in
            var freed = false
            state.update(claimed.lease) { entry in
                guard !entry.handlerFinished else { return }
                entry.duration = elapsed
                entry.handlerFinishedAt = end
                freed = true
            }
            if freed { state.busy -= 1 }
        }
        slotFreed.signal()
        // Said now, not when the outcome is written: while the writes fail the handler is no
        // longer running (before, the gauges stayed at their last value through an outage).
        updateSlotGauges()

        let outcome: JobOutcome?
        var workerFault: String?
        switch finish {
        case .handled(.success(let result)):
            outcome = .completed(result: result)
        case .handled(.failure(let error)):
            // The task is cancelled only through `stop`, which was not triggered; a handler that
            // failed because it was cancelled anyway (a race with the trigger) is given back.
            if Task.isCancelled || stop.reason == .shutdown {
                outcome = .released
            } else if let fault = error as? WorkerFaultError, fault.isWorkerFault {
                // This worker could not run it: back to the queue, no attempt used.
                outcome = .released
                workerFault = Self.describe(error)
                logger.error(
                    "This worker could not run the job; it goes back to the queue",
                    metadata: Self.metadata(of: claimed.lease, sessionID: job.sessionID, extra: ["error": .string(Self.describe(error))]))
            } else if let deferred = error as? DeferredJobError, deferred.isDeferred {
                // Not yet: back to the queue for later, no attempt used.
                outcome = .deferred(reason: Self.describe(error), delay: deferred.retryAfter ?? configuration.leaseDuration)
            } else if let permanent = error as? PermanentJobError, permanent.isPermanent {
                // Retrying cannot fix it (unreadable input, a permanent exit status): fail at once.
                outcome = .failed(error: Self.describe(error))
            } else {
                outcome = configuration.retryPolicy.outcome(
                    forFailedAttempt: claimed.lease.attempt,
                    maxAttempts: job.maxAttempts,
                    error: Self.describe(error)
                )
            }
        case .stopped(.shutdown):
            outcome = .released
        case .stopped(.cancelled):
            logger.info("Job cancelled while running", metadata: Self.metadata(of: claimed.lease, sessionID: job.sessionID, duration: elapsed))
            outcome = nil
        case .stopped(.eventsLost):
            logger.error(
                "Job attempt given up: some of its events were lost in a database failure; the job runs again when its lease runs out",
                metadata: Self.metadata(of: claimed.lease, sessionID: job.sessionID, duration: elapsed)
            )
            outcome = nil
        case .stopped(.leaseLost):
            logger.warning(
                "Lease lost while running - another worker owns the job now",
                metadata: Self.metadata(of: claimed.lease, sessionID: job.sessionID, duration: elapsed)
            )
            outcome = nil
        }

        if case .handled = finish {
            if let workerFault {
                state.withLock { $0.lastWorkerFault = workerFault }
                workerFaultsInARow.add(1, ordering: .relaxed)
            } else if workerFaultsInARow.load(ordering: .relaxed) > 0 {
                // (Read first: the common case, nothing to reset, writes nothing shared.)
                workerFaultsInARow.store(0, ordering: .relaxed)
            }
        }
        switch (finish, outcome) {
        case (_, .completed):
            metrics.completed(queue: job.queue, duration: elapsed)
        case (.handled(.failure(let error)), .retry), (.handled(.failure(let error)), .failed):
            let reason = (error as? ClassifiedJobError)?.failureReason ?? .error
            metrics.failed(queue: job.queue, reason: reason, duration: elapsed, willRetry: { if case .retry = outcome { true } else { false } }())
        case (.stopped(.cancelled), _):
            metrics.failed(queue: job.queue, reason: .cancelled, duration: elapsed, willRetry: false)
        case (.stopped(.leaseLost), _):
            metrics.givenBack(queue: job.queue, reason: .leaseLost)
        case (.stopped(.eventsLost), _):
            metrics.givenBack(queue: job.queue, reason: .eventsLost)
        case (_, .deferred):
            metrics.givenBack(queue: job.queue, reason: .deferred)
        case (_, .released):
            metrics.givenBack(queue: job.queue, reason: workerFault == nil ? .shutdown : .workerFault)
        default:
            break
        }
        // The outcome is written after the attempt's events (a reader that sees the job finished
        // has every event of it to read), with its ending event in the same statement.
        await events.written()
        if case .stopped(.cancelled) = finish {
            // No outcome to write: the ending event goes on its own (the worker still holds the
            // cancelled job's lease until its command has stopped).
            await events.status("cancelled", Self.statusFields(nil, elapsed: elapsed, dropped: events.droppedEvents))
            await events.written()
        }
        guard let outcome else {
            // Nothing to record: another worker or the operator decided the job's fate. A
            // cancelled job kept its lease while its command was being stopped (no retry of it,
            // no next turn of its session beside it); now that it has stopped, both may start.
            // (Should this write fail, the lease, no longer renewed, runs out and the rescue
            // frees the job.)
            if case .stopped(.cancelled) = finish {
                do {
                    // In a task of its own: this one was cancelled by the cancel itself, and
                    // `withTimeout` (the drivers too) gives up at once in a cancelled task, so
                    // the release never reached the store and the session's next turn waited
                    // for the lease to run out and the rescue (45 s by default).
                    let store = self.store
                    let storeTimeout = self.storeTimeout
                    let lease = claimed.lease
                    try await Task {
                        try await withTimeout(storeTimeout, operation: "cancellation release") { try await store.releaseCancelled([lease]) }
                    }.value
                    jobsAvailable.signal()
                } catch {
                    logger.warning(
                        "Could not tell the store that a cancelled job stopped; it is free (to retry, for its session's next turn) when its lease runs out",
                        metadata: Self.metadata(of: claimed.lease, sessionID: job.sessionID, extra: ["error": "\(error)"])
                    )
                }
            }
            finished(claimed.lease)
            return
        }
        let usage = events.usage + JobUsage(runSeconds: elapsed.inSeconds)
        metrics.usage(usage)
        var completion = JobCompletion(
            lease: claimed.lease, outcome: outcome,
            event: events.finalEvent(
                Self.statusEvent(outcome),
                workerFault.map { Self.workerFaultFields($0, elapsed: elapsed, dropped: events.droppedEvents) }
                    ?? Self.statusFields(outcome, elapsed: elapsed, dropped: events.droppedEvents),
                alwaysChecked: outcome.givesAttemptBack),
            usage: usage)
        completion.releasedForWorkerFault = workerFault != nil
        if !recorder.submit(completion) { recorded([completion], writes: nil) }
    }

    /// The `status` of the event that ends an attempt with `outcome`.
    static func statusEvent(_ outcome: JobOutcome) -> String {
        switch outcome {
        case .completed: "completed"
        case .retry: "retry_scheduled"
        case .failed: "failed"
        case .released, .deferred: "released"
        }
    }

    /// The fields of the `released` event of a job this worker could not run.
    static func workerFaultFields(_ error: String, elapsed: Duration, dropped: Int) -> KeyValuePairs<String, String> {
        [
            "durationMs": String(elapsed.inMilliseconds), "droppedEvents": String(dropped), "reason": #""worker_fault""#,
            "error": JSONText.quoted(JobOutcome.storableError(error)),
        ]
    }

    /// The fields of an ending status event (errors as they would be stored: no NUL, bounded).
    static func statusFields(_ outcome: JobOutcome?, elapsed: Duration, dropped: Int) -> KeyValuePairs<String, String> {
        let duration = String(elapsed.inMilliseconds)
        let dropped = String(dropped)
        switch outcome {
        case .retry(let error, let delay)?:
            return [
                "durationMs": duration, "droppedEvents": dropped, "error": JSONText.quoted(JobOutcome.storableError(error)),
                "retryInMs": String(delay.inMilliseconds),
            ]
        case .failed(let error)?:
            return ["durationMs": duration, "droppedEvents": dropped, "error": JSONText.quoted(JobOutcome.storableError(error))]
        case .released?:
            return ["durationMs": duration, "droppedEvents": dropped, "reason": #""shutdown""#]
        case .deferred(let reason, let delay)?:
            return [
                "durationMs": duration, "droppedEvents": dropped, "reason": #""deferred""#,
                "error": JSONText.quoted(JobOutcome.storableError(reason)), "retryInMs": String(delay.inMilliseconds),
            ]
        case .completed?, nil:
            return ["durationMs": duration, "droppedEvents": dropped]
        }
    }

    /// Finishes jobs whose outcomes were written (`writes`: what became of each) or given up on
    /// (`writes == nil`): logs them, notes retries due, and frees their entries.
    func recorded(_ completions: [JobCompletion], writes: [OutcomeWrite]?) {
        let now = ContinuousClock.now
        var retryDue = false
        var sessionMoved = false
        let (jobs, lastJobEnded) = state.withLock { state in
            var jobs: [RunningJob?] = []
            jobs.reserveCapacity(completions.count)
            for (index, completion) in completions.enumerated() {
                let job = state.remove(completion.lease)
                jobs.append(job)
                if let delay = completion.outcome.runsAgainAfter, writes?[index].isRecorded == true {
                    state.noteRetryDue(at: now + delay + .milliseconds(5), now: now)
                    retryDue = true
                }
                if job?.sessionID != nil, writes?[index].isRecorded == true { sessionMoved = true }
            }
            if sessionMoved { state.sessionTurnsLetThrough = true }
            return (jobs, state.takeLastJobEndedIfIdle())
        }
        // One write for the batch's lines, not one a job (``LogLineBatch``).
        LogLineBatch.collecting {
            for (index, completion) in completions.enumerated() {
                let job = jobs[index]
                log(completion.outcome, write: writes?[index], releaseReason: completion.releasedForWorkerFault ? "worker_fault" : nil) { extra in
                    Self.metadata(of: completion.lease, sessionID: job?.sessionID, duration: job?.duration, extra: extra)
                }
            }
        }
        // Let the claim loop shorten its sleep to a retry, or claim the next turn of a session
        // whose turn just finished (the database let it through with this write).
        if retryDue || sessionMoved { jobsAvailable.signal() }
        slotFreed.signal()
        updateSlotGauges()
        lastJobEnded?.resume()
    }

    /// Stops the attempts whose earlier events the store does not have (the event recorder's
    /// ``RefusedEvents/brokenStreams``): their outcome would be refused as well. Their leases,
    /// no longer renewed, run out, and the rescue gives the jobs their next attempt, whose
    /// events number on from the last one stored.
    func giveUp(brokenStreams: Set<Lease>) {
        let stops = state.withLock { state in
            brokenStreams.compactMap { lease in state.running[lease.jobID].flatMap { $0.lease == lease ? $0.stop : nil } }
        }
        for stop in stops { stop.trigger(.eventsLost) }
    }

    /// Stops the attempts whose events the store refused because their lease is no longer held
    /// (``RefusedEvents/lostLeases``): the job was rescued, and may run on another worker. A
    /// renewal that answers says the same; this one also holds while renewals fail (their own
    /// connection gone), which before left the attempt running beside the new one.
    func stop(lostLeases: Set<Lease>) {
        let stops = state.withLock { state in
            lostLeases.compactMap { lease in state.running[lease.jobID].flatMap { $0.lease == lease ? $0.stop : nil } }
        }
        for stop in stops { stop.trigger(.leaseLost) }
    }

    /// Frees the entry of a job that ends without an outcome to write.
    func finished(_ lease: Lease) {
        let lastJobEnded = state.withLock { state in
            _ = state.remove(lease)
            return state.takeLastJobEndedIfIdle()
        }
        slotFreed.signal()
        updateSlotGauges()
        lastJobEnded?.resume()
    }

    /// The metadata of a log line about one attempt of a job.
    static func metadata(
        of lease: Lease, sessionID: UUID?, duration: Duration? = nil, extra: Logger.Metadata = [:]
    ) -> Logger.Metadata {
        var metadata = JobContext.metadata(jobID: lease.jobID, sessionID: sessionID, attempt: lease.attempt, room: 1 + extra.count)
        if let duration { metadata["durationMs"] = .stringConvertible(duration.inMilliseconds) }
        for (key, value) in extra { metadata[key] = value }
        return metadata
    }

    func log(_ outcome: JobOutcome, write: OutcomeWrite?, releaseReason: String? = nil, metadata base: (Logger.Metadata) -> Logger.Metadata) {
        var note: Logger.Metadata = [:]
        switch write {
        case nil:
            return
        case .applied?:
            break
        case .alreadyApplied?:
            // A write whose answer was lost (it timed out) had applied: the job is recorded as meant.
            note = ["recordedByEarlierWrite": "true"]
        case .cancelled?:
            logger.info("Job outcome not recorded: the job was cancelled while it ran", metadata: base(["outcome": "\(outcome.name)"]))
            return
        case .eventsLost?:
            logger.error(
                "Job outcome not recorded: some of the attempt's events were lost in a database failure (written, answered, never committed); the job runs again when its lease runs out",
                metadata: base(["outcome": "\(outcome.name)"])
            )
            return
        case .leaseLost?:
            logger.warning(
                "Job outcome discarded: the job's lease was lost (it expired and the job was rescued, or another worker runs it)",
                metadata: base(["outcome": "\(outcome.name)"])
            )
            return
        }
        func metadata(_ extra: Logger.Metadata) -> Logger.Metadata {
            base(note.isEmpty ? extra : extra.merging(note) { $1 })
        }
        switch outcome {
        case .completed:
            logger.info("Job completed", metadata: metadata([:]))
        case .retry(let error, let delay):
            logger.warning(
                "Job failed",
                metadata: metadata(["error": .string(error), "willRetry": "true", "retryInMs": .stringConvertible(delay.inMilliseconds)])
            )
        case .failed(let error):
            logger.error("Job failed", metadata: metadata(["error": .string(error), "willRetry": "false"]))
        case .released:
            logger.info("Job released back to the queue", metadata: metadata(["reason": .string(releaseReason ?? "shutdown")]))
        case .deferred(let reason, let delay):
            logger.warning(
                "Job cannot run yet; back to the queue without using an attempt",
                metadata: metadata(["error": .string(reason), "retryInMs": .stringConvertible(delay.inMilliseconds)]))
        }
    }
}
