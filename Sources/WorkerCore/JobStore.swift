import Foundation

/// A driver that keeps jobs durably and hands them out to workers.
///
/// Every driver (SQLite, PostgreSQL) implements the same semantics, checked by one shared
/// conformance suite:
/// - ``claim(queues:limit:workerID:leaseDuration:)`` never hands one job to two claimers,
///   takes due `pending` jobs by priority (higher first), then `runAt`, then age, marks them
///   `processing`, counts the attempt and sets the lease.
/// - Every write about a claimed job (``record(_:)``, ``renew(_:duration:)``) is conditional on
///   the lease (job id, worker, attempt): a worker that lost its lease changes nothing.
/// - ``rescueExpiredLeases(sparing:)`` returns jobs whose lease ran out to `pending`, or to
///   `failed` when their attempts are used up, and never touches a job that meanwhile finished
///   nor one the rescuing worker says it is running.
public protocol JobStore: Sendable {
    /// Creates or upgrades the schema; safe to run again and from several processes at once.
    /// Reads the recorded schema version first and changes nothing when it is current, so a
    /// role that may only read and write the table can run it.
    /// - Throws: ``JobStoreError/notPermitted(_:)`` when the role may not change the schema.
    func migrate() async throws

    /// Checks, without changing anything, that the schema is there and current (start-up with
    /// `AUTO_MIGRATE=false`).
    /// - Throws: ``JobStoreError/notPermitted(_:)`` saying to run `worker migrate` when it is
    ///   missing or behind, ``JobStoreError/schemaTooNew(found:supported:)`` when it is ahead.
    func verifySchema() async throws

    /// Inserts jobs atomically (all or none) and returns their ids in order.
    func enqueue(_ jobs: [NewJob]) async throws -> [UUID]

    /// Claims up to `limit` due pending jobs from `queues` for `workerID`, and stores each one's
    /// `claimed` status event (`{"status":"claimed","workerId":…,"attempt":…}`) numbered after the
    /// job's last event (``ClaimedJob/lastEventSequence`` is its number).
    func claim(queues: [String], limit: Int, workerID: String, leaseDuration: Duration) async throws -> [ClaimedJob]

    /// Extends the given leases by `duration` from now and reports, per job, whether each is still held.
    func renew(_ leases: [Lease], duration: Duration) async throws -> [UUID: LeaseState]

    /// Records outcomes, each with its ending status event (``JobCompletion/event``) when it
    /// applies; returns, in order, whether each was applied (`false`: lease lost, or an
    /// outcome whose ending event would follow an event the store does not have, as
    /// ``appendEvents(_:)`` refuses a broken stream; the job is then left to the rescue).
    func record(_ completions: [JobCompletion]) async throws -> [Bool]

    /// Returns jobs with expired leases to `pending` (or `failed` when no attempts remain),
    /// except those in `running`: the calling worker is alive and runs them, so their lease ran
    /// out only because a renewal came late (a loaded machine), and the next renewal revives it.
    /// A `processing` job with no lease at all (left by the original plan's worker in a table
    /// upgraded in place, or set by hand) counts as expired: no worker can hold it, and it held
    /// its session's later turns for ever.
    func rescueExpiredLeases(sparing running: [UUID]) async throws -> [RescuedJob]

    /// Says that the commands of these cancelled jobs have stopped. A running job that an
    /// operator cancels keeps its lease (renewed as before) until then, so that neither a retry
    /// of it (refused meanwhile) nor its session's next turn starts beside a command still being
    /// stopped.
    func releaseCancelled(_ leases: [Lease]) async throws

    /// Stores events of running jobs (``NewJobEvent``), each only while its job's lease holds
    /// (job id, worker, attempt; a cancelled job's worker still holds it until its command has
    /// stopped). An event already stored (same job and sequence number: a write repeated after
    /// its answer was lost) is skipped. Tells readers which jobs have new events (a notification
    /// where the driver has them). The lease is checked per event, not per job: a batch may hold
    /// an earlier attempt's late events beside the current attempt's.
    ///
    /// A job's stored events never have a gap: a lease's events in the batch are stored only
    /// when every earlier event of the job is (the job's last stored event is at least the one
    /// before the lease's first in the batch). Returns the leases refused, by reason: nothing of
    /// theirs was stored.
    func appendEvents(_ events: [NewJobEvent]) async throws -> RefusedEvents

    /// Up to `limit` events of a job with a sequence number above `after`, in order, ending
    /// before the first event that starts at or past `maxBytes` bytes of `data` (so a page holds
    /// at most `maxBytes` plus one event, and never nothing while events follow).
    func events(jobID: UUID, after: Int64, limit: Int, maxBytes: Int) async throws -> [JobEvent]

    /// The job with this id, or `nil`.
    func job(id: UUID) async throws -> Job?

    /// Jobs matching `filter`, newest first.
    func jobs(matching filter: JobFilter) async throws -> [Job]

    /// Those of `sessions` that have a turn not yet finished (pending, processing, or one that
    /// holds its session): their workspaces are in use or about to be (the workspace sweeper).
    func sessionsWithUnfinishedTurns(among sessions: [UUID]) async throws -> Set<UUID>

    /// Cancels a `pending` or `processing` job, or a failed turn that holds its session; a worker
    /// running it learns at its next lease renewal (or sooner, from a notification).
    /// - Throws: ``JobStoreError/jobNotFound(_:)``, ``JobStoreError/invalidTransition(id:from:action:)``.
    func cancel(id: UUID) async throws -> Job

    /// Makes a `failed`, `cancelled` or `completed` job `pending` again, due now, with at least one attempt left.
    /// - Throws: ``JobStoreError/jobNotFound(_:)``, ``JobStoreError/invalidTransition(id:from:action:)``.
    func retry(id: UUID) async throws -> Job

    /// Counts by state, in one query; with a `window`, also throughput and run-time figures
    /// of the jobs completed within it.
    func stats(window: Duration?) async throws -> QueueStats

    /// How many running jobs each worker holds (by `locked_by`), all of them: the dashboard's
    /// Workers table counted a sample of the newest 500, and so showed busy workers short.
    func runningJobsByWorker() async throws -> [String: Int]

    /// Jobs completed and failed within the last `window`, counted by `interval` (oldest first;
    /// intervals in which none finished are left out). Reads the finished-jobs index only.
    func finishedTimeline(window: Duration, interval: Duration) async throws -> [FinishedInterval]

    /// Deletes up to `limit` jobs in `status` that finished longer than `olderThan` ago; returns
    /// how many it deleted, or `nil` when another worker is deleting right now.
    func deleteFinished(status: JobStatus, olderThan: Duration, limit: Int) async throws -> Int?

    /// A trivial round trip, for readiness checks.
    func ping() async throws

    /// Runs until cancelled, calling `onEvent` when jobs may be waiting in `queues`
    /// (an insert by this or another process) or when a job was cancelled.
    /// Calls it with ``StoreEvent/jobsAvailable`` once as soon as it watches: jobs may have
    /// arrived before, and a caller knows from then on that no insert goes unannounced.
    /// Drivers without a notification mechanism return at once; the processor then relies on polling.
    func watch(queues: [String], onEvent: @escaping @Sendable (StoreEvent) -> Void) async throws

    /// Runs until cancelled, calling `onJobs` with the ids of jobs that have new events (written
    /// by any process). Drivers without notifications return at once; readers then poll.
    func watchEvents(onJobs: @escaping @Sendable ([UUID]) -> Void) async throws

    /// Releases the store's resources. Further calls fail.
    func close() async throws
}

/// What `worker bench` needs of a store beyond ``JobStore``: kept apart so that the store a
/// worker runs with offers no way to drop its table.
public protocol BenchmarkJobStore: JobStore {
    /// Drops the jobs table and what ``JobStore/migrate()`` created for it (benchmarks' scratch tables).
    func dropTable() async throws

    /// After a bulk load: refreshes the planner's statistics of the jobs table and writes the
    /// database's dirty pages out, so that a benchmark does not time background work its own
    /// load caused (the peers' harness settles the database so before it starts the clock).
    /// Parts the database user has no right to run are skipped.
    func settle() async throws
}

/// A hint from the store's notification channel.
public enum StoreEvent: Sendable, Hashable {
    /// New or newly due jobs may be waiting.
    case jobsAvailable
    /// An operator cancelled this job.
    case jobCancelled(UUID)
}

extension JobStore {
    /// Up to `limit` events of a job with a sequence number above `after`, in order, whatever
    /// their size (readers that hold pages in memory bound them: ``JobEventPaging``).
    public func events(jobID: UUID, after: Int64, limit: Int) async throws -> [JobEvent] {
        try await events(jobID: jobID, after: after, limit: limit, maxBytes: .max)
    }

    /// Returns every job with an expired lease to `pending` (or `failed` when no attempts remain).
    public func rescueExpiredLeases() async throws -> [RescuedJob] {
        try await rescueExpiredLeases(sparing: [])
    }

    /// Counts by state, in one query.
    public func stats() async throws -> QueueStats {
        try await stats(window: nil)
    }
}
