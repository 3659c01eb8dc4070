import Foundation
import NIOPosix
import Logging
import SQLiteNIO
import Synchronization
import WorkerCore

/// The embedded ``JobStore``: one SQLite file, shared safely by any number of processes.
///
/// - Two connections per process, in WAL mode with `synchronous=FULL`: one for every write
///   (and the reads that belong to them), its statements serialised by an ``AsyncLock``, other
///   processes' by SQLite's own locking (`busy_timeout`); and a read-only one for what operators
///   and readers ask (jobs, lists, statistics, events), with a lock of its own. WAL lets it read
///   beside the writer: on one connection, a dashboard's text search over a big table held every
///   lease renewal of the process behind it (PostgreSQL gives renewals a connection for the same
///   reason), and a write waiting for another process's lock held every page and event stream.
/// - Times are stored as integer milliseconds since the Unix epoch.
/// - ``watch(queues:onEvent:)`` reports enqueues of this process at once and commits of other
///   processes (the CLI) within ``changePollInterval``, by watching `PRAGMA data_version`.
public final class SQLiteJobStore: BenchmarkJobStore {
    /// How often ``watch(queues:onEvent:)`` checks the file for other processes' commits.
    public let changePollInterval: Duration
    public let path: String
    /// How long a statement waits for another process's write lock: the server-side bound of
    /// the store's statements (``StoreDeadline``).
    public let busyTimeout: Duration
    let table: String
    let connection: SQLiteConnection
    let lock = AsyncLock()
    /// The read-only connection (`PRAGMA query_only`) and its lock: see the type's comment.
    let reader: SQLiteConnection
    let readLock = AsyncLock()
    /// The connection's `busy_timeout` in milliseconds, as last set (see ``boundBusyWait(_:)``).
    private let currentBusyTimeout: Atomic<Int>
    let logger: Logger
    /// Whether a turn that fails for good holds its session (`SESSION_ON_FAILURE`).
    public let sessionOnFailure: SessionFailurePolicy
    private let watchers = Mutex<[UUID: @Sendable (StoreEvent) -> Void]>([:])

    private init(
        path: String, table: String, connection: SQLiteConnection, reader: SQLiteConnection, busyTimeout: Duration,
        changePollInterval: Duration, sessionOnFailure: SessionFailurePolicy, logger: Logger
    ) {
        self.reader = reader
        self.path = path
        self.sessionOnFailure = sessionOnFailure
        self.busyTimeout = busyTimeout
        self.currentBusyTimeout = Atomic(Int(busyTimeout.inMilliseconds))
        self.table = table
        self.connection = connection
        self.changePollInterval = changePollInterval
        self.logger = logger
    }

    /// Opens (creating if needed) the database file at `path`.
    ///
    /// - Parameters:
    ///   - table: the jobs table's name (letters, digits and `_`).
    ///   - busyTimeout: how long a statement waits for another process's write lock.
    ///   - sessionOnFailure: whether a turn that fails for good holds its session.
    ///   - threadPool: the threads SQLite's calls (and their fsyncs) run on; NIO's shared pool
    ///     (one thread a core) by default. A process with many stores at once (the test suite)
    ///     gives them a larger pool, or one store's fsyncs stall every other's calls.
    public static func open(
        path: String,
        table: String = "coding_jobs",
        busyTimeout: Duration = .seconds(10),
        changePollInterval: Duration = .milliseconds(200),
        sessionOnFailure: SessionFailurePolicy = .continue,
        threadPool: NIOThreadPool = .singleton,
        logger: Logger = Logger(label: "worker.sqlite")
    ) async throws -> SQLiteJobStore {
        guard table.range(of: "^[A-Za-z_][A-Za-z0-9_]{0,62}$", options: .regularExpression) != nil else {
            throw SQLiteJobStoreError.invalidTableName(table)
        }
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw SQLiteJobStoreError.cannotOpen(path: path, reason: "the folder \(directory) does not exist")
        }
        // SQLite keeps its write-ahead log beside the file and needs to write it even to read:
        // without this check a read-only folder gave "readonlyDirectory: attempt to write a
        // readonly database" to a read-only command, or "cantOpen" with no word of permissions.
        let name = URL(fileURLWithPath: path).lastPathComponent
        let fix = "run it where this user can write, or point DATABASE_URL at a folder it can (sqlite:/path/to/\(name))"
        if access(directory, W_OK) != 0 {
            throw SQLiteJobStoreError.cannotOpen(path: path, reason: "this user (uid \(getuid())) cannot write in the folder \(directory), where SQLite keeps \(name) and its write-ahead log (\(name)-wal, \(name)-shm), also to read it; \(fix)")
        }
        if FileManager.default.fileExists(atPath: path), access(path, R_OK | W_OK) != 0 {
            throw SQLiteJobStoreError.cannotOpen(path: path, reason: "this user (uid \(getuid())) cannot read and write the file; \(fix), or give it the file")
        }
        let connection: SQLiteConnection
        do {
            connection = try await SQLiteConnection.open(
                storage: .file(path: path), threadPool: threadPool, logger: logger, on: MultiThreadedEventLoopGroup.singleton.any())
        } catch {
            throw SQLiteJobStoreError.cannotOpen(path: path, reason: "\(error)")
        }
        let reader: SQLiteConnection
        do {
            _ = try await connection.query("PRAGMA busy_timeout = \(Int(busyTimeout.inMilliseconds))", [])
            try await enableWriteAheadLog(on: connection, waitingAtMost: busyTimeout)
            _ = try await connection.query("PRAGMA synchronous = FULL", [])
            reader = try await SQLiteConnection.open(
                storage: .file(path: path), threadPool: threadPool, logger: logger, on: MultiThreadedEventLoopGroup.singleton.any())
        } catch {
            try? await connection.close()
            throw SQLiteJobStoreError.cannotOpen(path: path, reason: "\(error)")
        }
        do {
            // A read waits for a lock only while SQLite recovers or resets the write-ahead log.
            _ = try await reader.query("PRAGMA busy_timeout = \(Int(busyTimeout.inMilliseconds))", [])
            _ = try await reader.query("PRAGMA query_only = 1", [])
        } catch {
            try? await reader.close()
            try? await connection.close()
            throw SQLiteJobStoreError.cannotOpen(path: path, reason: "\(error)")
        }
        return SQLiteJobStore(
            path: path, table: table, connection: connection, reader: reader, busyTimeout: busyTimeout,
            changePollInterval: changePollInterval, sessionOnFailure: sessionOnFailure, logger: logger)
    }

    /// Switches the file to write-ahead logging (a setting of the file, kept once made), waiting
    /// up to `limit` for other connections' locks.
    ///
    /// The switch takes the file's exclusive lock and, unlike statements, does not call the busy
    /// handler: on a new file that another process is opening at the same moment (a worker and
    /// `worker enqueue` started together, the tour's two commands) it failed at once with
    /// "database is locked", and that process did not start. So it is retried here, briefly
    /// apart, until it succeeds or `limit` has passed.
    private static func enableWriteAheadLog(on connection: SQLiteConnection, waitingAtMost limit: Duration) async throws {
        let deadline = ContinuousClock.now + limit
        while true {
            do {
                _ = try await connection.query("PRAGMA journal_mode = WAL", [])
                return
            } catch let error as SQLiteError where [.busy, .locked].contains(error.reason) && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(5))
            }
        }
    }

    /// Bounds the wait for another process's write lock by the caller's deadline, before a
    /// statement that changes jobs: ``busyTimeout``, or less when less time is left, so that the
    /// statement answers (done, or `SQLITE_BUSY`) before the caller gives up on it. Throws
    /// ``TimeoutError`` when the caller has given up, or less than ``StoreDeadline/margin`` is
    /// left. Called with this process's lock held, so the setting is this call's alone; every
    /// write calls it, those with no deadline too: the setting stays on the shared connection,
    /// and a write that set none got what the last bounded call left (0 s after a late renewal,
    /// "database is locked" at once for an enqueue, a cancel, the retention).
    func boundBusyWait(_ operation: String) async throws {
        // The bound itself leaves the margin, so the check asks for no more than that.
        try StoreDeadline.ensureTime(for: .zero, operation: operation)
        var bound = busyTimeout
        if let deadline = StoreDeadline.current {
            // Whole seconds below the time left, so that the setting changes seldom.
            let left = deadline - .now - StoreDeadline.margin
            if left < bound { bound = .seconds(max(0, left.components.seconds)) }
        }
        let milliseconds = Int(bound.inMilliseconds)
        guard currentBusyTimeout.load(ordering: .relaxed) != milliseconds else { return }
        _ = try await connection.query("PRAGMA busy_timeout = \(milliseconds)", [])
        currentBusyTimeout.store(milliseconds, ordering: .relaxed)
    }

    /// Runs `body` in one write transaction (`BEGIN IMMEDIATE`): committed when it returns,
    /// rolled back when anything throws. Called with ``lock`` held.
    ///
    /// `body` reads the clock for what it writes (a lease's expiry, a start, an end, an event's
    /// time), not its caller: this process's lock and then the file's write lock may each have
    /// been waited for (another process holds it for up to the busy timeout), and a time read
    /// before both was behind by that wait: a claimed lease shorter than `LEASE_DURATION_MS`
    /// (lost while the job ran, and the job run twice), a cancel older than another process's
    /// watcher looks back for (its command stopped a renewal later, not at once).
    ///
    /// The rollback runs whatever happened to the calling task. sqlite-nio sends each statement
    /// through NIO's thread pool, which drops the work of a cancelled task; a store call the
    /// worker gave up on (``withTimeout(_:operation:_:)`` cancels it) had its next statement
    /// refused, and its rollback refused the same way, so the shared connection stayed inside
    /// the transaction and every later write of the process failed ("cannot start a
    /// transaction within a transaction") until a restart.
    func inTransaction<T>(_ body: () async throws -> T) async throws -> T {
        _ = try await connection.query("BEGIN IMMEDIATE", [])
        do {
            let result = try await body()
            _ = try await connection.query("COMMIT", [])
            return result
        } catch {
            await rollBack()
            throw error
        }
    }

    private func rollBack() async {
        do {
            // The future form: sent to the thread pool whether or not this task was cancelled.
            _ = try await connection.query("ROLLBACK", []).get()
        } catch let error as SQLiteError where error.message.contains("no transaction is active") {
            // SQLite ended the transaction itself (it does on some errors): nothing to undo.
        } catch {
            logger.error("Could not roll back a transaction; the store's writes may fail until the worker restarts", metadata: ["error": "\(error)"])
        }
    }

    // MARK: - Producing

    public func enqueue(_ jobs: [NewJob]) async throws -> [UUID] {
        guard !jobs.isEmpty else { return [] }
        for job in jobs { try job.validate() }
        let ids = UUID.timeOrdered(count: jobs.count)
        // One multi-row INSERT per chunk, all chunks in one transaction: all or nothing.
        let chunkSize = 500
        try await lock.withLock {
            try await boundBusyWait("enqueue")
            try await inTransaction {
                // The time once the file's write lock is held (see ``inTransaction(_:)``).
                let now = Self.milliseconds(Date())
                for start in stride(from: 0, to: jobs.count, by: chunkSize) {
                    let end = min(start + chunkSize, jobs.count)
                    var binds: [SQLiteData] = []
                    binds.reserveCapacity((end - start) * 11)
                    var rows: [String] = []
                    for index in start..<end {
                        let job = jobs[index]
                        let base = binds.count
                        let placeholders: [String] = (1...11).map { (offset: Int) -> String in "?\(base + offset)" }
                        rows.append("(" + placeholders.joined(separator: ",") + ")")
                        let sessionID: SQLiteData = job.sessionID.map { .text($0.lowercasedText) } ?? .null
                        let runAt: Int = job.runAt.map(Self.milliseconds) ?? now
                        binds += [
                            .text(ids[index].lowercasedText),
                            .text(job.queue),
                            sessionID,
                            .text(job.prompt),
                            .text(job.payload),
                            .integer(job.priority),
                            .integer(runAt),
                            .integer(job.maxAttempts),
                            .integer(now),
                            .text(JobStatus.pending.rawValue),
                            job.userID.map { .text($0.lowercasedText) } ?? .null,
                        ]
                    }
                    _ = try await connection.query(
                        """
                        INSERT INTO "\(table)" (id, queue, session_id, prompt, payload, priority, run_at, max_attempts, created_at, status, user_id)
                        VALUES \(rows.joined(separator: ","))
                        """,
                        binds
                    )
                }
            }
        }
        notify(.jobsAvailable)
        return ids
    }

    // MARK: - Working

    public func claim(queues: [String], limit: Int, workerID: String, leaseDuration: Duration) async throws -> [ClaimedJob] {
        guard limit > 0, !queues.isEmpty else { return [] }
        let queueList = queues.indices.map { "?\($0 + 5)" }.joined(separator: ",")
        let (rows, expires) = try await lock.withLock {
            try await boundBusyWait("claim")
            return try await inTransaction { () -> ([SQLiteRow], Int) in
            // The time once the file's write lock is held (see ``inTransaction(_:)``): taken before
            // the wait, a lease was shortened, and its start backdated, by however long that was.
            let now = Self.milliseconds(Date())
            let expires = now + Int(leaseDuration.inMilliseconds)
            let rows = try await connection.query(
                """
                UPDATE "\(table)" SET status = 'processing', attempts = attempts + 1, locked_by = ?1,
                    lease_expires_at = ?2, started_at = ?3
                WHERE id IN (
                    SELECT id FROM "\(table)"
                    WHERE status = 'pending' AND held_by_session = 0 AND run_at <= ?3 AND queue IN (\(queueList))
                    ORDER BY priority DESC, run_at, id
                    LIMIT ?4
                )
                RETURNING \(SQLiteSchema.columns),
                    (SELECT coalesce(max(e.seq), 0) FROM \(eventsTable) AS e WHERE e.job_id = "\(table)".id) AS last_event_seq
                """,
                [.text(workerID), .integer(expires), .integer(now), .integer(limit)] + queues.map { .text($0) }
            )
            // Each job's `claimed` event, numbered after its last one, in the claim's transaction.
            try await insertClaimedEvents(rows, workerID: workerID, now: now)
            return (rows, expires)
            }
        }
        var claimed: [ClaimedJob] = []
        claimed.reserveCapacity(rows.count)
        for row in rows {
            do {
                let job = try Self.decode(row)
                claimed.append(ClaimedJob(
                    job: job, lease: Lease(jobID: job.id, workerID: workerID, attempt: job.attempts, expiresAt: Self.date(expires)),
                    lastEventSequence: Int64(row.column("last_event_seq")?.integer ?? 0) + 1))
            } catch {
                try await failUndecodable(row: row, error: error)
            }
        }
        claimed.sortIntoClaimOrder()
        return claimed
    }

    /// A claimed row that cannot be read as a job is failed at once, so it is never claimed again.
    private func failUndecodable(row: SQLiteRow, error: any Error) async throws {
        let id = row.column("id")?.string ?? "?"
        let message = "\(error)"
        logger.error("Job row cannot be read; marking it failed", metadata: ["jobId": .string(id), "error": .string(message)])
        try await lock.withLock {
            try await boundBusyWait("failing an unreadable row")
            _ = try await connection.query(
                """
                UPDATE "\(table)" SET status = 'failed', last_error = ?2, completed_at = ?3, locked_by = NULL, lease_expires_at = NULL
                WHERE id = ?1
                """,
                [.text(id), .text(message), .integer(Self.milliseconds(Date()))]
            )
        }
    }

    public func record(_ completions: [JobCompletion]) async throws -> [Bool] {
        guard !completions.isEmpty else { return [] }
        return try await lock.withLock {
            try await boundBusyWait("recording outcomes")
            do {
                return try await inTransaction {
                    // The time once the file's write lock is held (see ``inTransaction(_:)``).
                    let now = Self.milliseconds(Date())
                    var applied: [Bool] = []
                    applied.reserveCapacity(completions.count)
                    for completion in completions {
                        let tokens = completion.usage.bounded
                        let (assignments, binds) = Self.assignments(for: completion.outcome, now: now, failureBlocksSession: sessionOnFailure == .block)
                        let lease = completion.lease
                        // The measured figures follow the outcome's own values.
                        let measured = 6 + binds.count
                        let rows = try await connection.query(
                            """
                            UPDATE "\(table)" SET \(assignments), locked_by = NULL, lease_expires_at = NULL,
                                input_tokens = min(min(input_tokens, \(JobUsage.maximumTokens)) + ?4, \(JobUsage.maximumTokens)),
                                output_tokens = min(min(output_tokens, \(JobUsage.maximumTokens)) + ?5, \(JobUsage.maximumTokens)), cost_usd = cost_usd + ?6,
                                cpu_seconds = cpu_seconds + ?\(measured + 1), peak_memory_bytes = max(peak_memory_bytes, ?\(measured + 2)),
                                run_seconds = run_seconds + ?\(measured + 3)
                            WHERE id = ?1 AND status = 'processing' AND locked_by = ?2 AND attempts = ?3
                                AND (?\(measured + 4) = 0 OR (SELECT coalesce(max(e.seq), 0) FROM \(eventsTable) AS e WHERE e.job_id = ?1) IN (?\(measured + 4), ?\(measured + 5)))
                            RETURNING id
                            """,
                            [
                                .text(lease.jobID.lowercasedText), .text(lease.workerID), .integer(lease.attempt),
                                .integer(Int(tokens.inputTokens)), .integer(Int(tokens.outputTokens)),
                                .float(completion.usage.costUSD),
                            ] + binds + [
                                .float(completion.usage.cpuSeconds), .integer(Int(completion.usage.peakMemoryBytes)), .float(completion.usage.runSeconds),
                                // The ending event follows exactly the last stored one, or is it (a later
                                // one is a newer run's: PostgresSchema.endingEventFollows).
                                .integer(Int(completion.event?.follows ?? 0)), .integer(Int(completion.event?.sequence ?? 0)),
                            ]
                        )
                        applied.append(!rows.isEmpty)
                        if !rows.isEmpty, let event = completion.event {
                            // The attempt's ending event, with its outcome.
                            try await insertEvents([(lease.jobID, event.sequence, lease.attempt, JobEvent.Kind.status, event.data)], now: now)
                        }
                    }
                    return applied
                }
            } catch {
                throw Self.translate(error)
            }
        }
    }

    /// A value SQLite refuses for its size as ``JobStoreError/valueRejected(_:)``; others as they are.
    static func translate(_ error: any Error) -> any Error {
        if let error = error as? SQLiteError, error.reason == .tooBig { return JobStoreError.valueRejected(error.message) }
        return error
    }

    /// The `SET` list and its binds (numbered from `?7`) for one outcome.
    private static func assignments(for outcome: JobOutcome, now: Int, failureBlocksSession: Bool) -> (String, [SQLiteData]) {
        switch outcome {
        case .completed(let result):
            ("status = 'completed', result = ?7, completed_at = ?8", [.text(result), .integer(now)])
        case .retry(let error, let delay):
            ("status = 'pending', last_error = ?7, run_at = ?8", [.text(error), .integer(now + Int(delay.inMilliseconds))])
        case .failed(let error):
            (
                "status = 'failed', last_error = ?7, completed_at = ?8, blocks_session = (session_id IS NOT NULL AND ?9)",
                [.text(error), .integer(now), .integer(failureBlocksSession ? 1 : 0)]
            )
        case .released:
            ("status = 'pending', attempts = attempts - 1", [])
        case .deferred(let reason, let delay):
            ("status = 'pending', attempts = attempts - 1, last_error = ?7, run_at = ?8", [.text(reason), .integer(now + Int(delay.inMilliseconds))])
        }
    }

    /// On the read connection: the file answers. (On the write connection the ping waited behind
    /// any write, and a write may wait its busy timeout for another process's lock, `worker
    /// enqueue` or `worker jobs cancel`: `/ready` answered 503 for a second or more, for nothing.
    /// Writes that cannot be made show in `/ready`'s other checks.)
    public func ping() async throws {
        _ = try await readLock.withLock { try await reader.query("SELECT 1", []) }
    }

    // MARK: - Notifications

    public func watch(queues: [String], onEvent: @escaping @Sendable (StoreEvent) -> Void) async throws {
        let token = UUID()
        watchers.withLock { $0[token] = onEvent }
        defer { _ = watchers.withLock { $0.removeValue(forKey: token) } }
        var lastVersion: Int?
        var watching = false
        var cancelledSince = Self.milliseconds(Date())
        while !Task.isCancelled {
            // `data_version` changes when another connection (process) commits to the file.
            let version = try await lock.withLock {
                try await connection.query("PRAGMA data_version", []).first?.columns.first?.data.integer
            }
            if !watching {
                watching = true
                // Watching from here on (in this process since the watcher was registered, in
                // others since the version just read): what came before is announced once.
                onEvent(.jobsAvailable)
            } else if version != lastVersion {
                onEvent(.jobsAvailable)
                // Another process (the CLI) may have cancelled a job this one runs.
                let now = Self.milliseconds(Date())
                let cancelled = try await lock.withLock {
                    try await connection.query(
                        "SELECT id FROM \"\(table)\" WHERE status = 'cancelled' AND completed_at >= ?1",
                        [.integer(cancelledSince - 1000)]
                    )
                }
                cancelledSince = now
                for row in cancelled {
                    if let id = row.column("id")?.string.flatMap(UUID.init(uuidString:)) { onEvent(.jobCancelled(id)) }
                }
            }
            lastVersion = version
            do { try await Task.sleep(for: changePollInterval) } catch { return }
        }
    }

    func notify(_ event: StoreEvent) {
        for watcher in watchers.withLock({ Array($0.values) }) { watcher(event) }
    }

    public func close() async throws {
        var failure: (any Error)?
        do { try await readLock.withLock { try await reader.close() } } catch { failure = error }
        try await lock.withLock { try await connection.close() }
        if let failure { throw failure }
    }
}

extension SQLiteJobStore {
    /// Runs one raw SQL statement (tests, and rows inserted by hand).
    func rawExecute(_ sql: String) async throws {
        _ = try await lock.withLock { try await connection.query(sql, []) }
    }
}
