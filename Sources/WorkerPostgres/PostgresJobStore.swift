import Foundation
import Logging
import NIOSSL
import PostgresNIO
import ServiceLifecycle
import Synchronization
import WorkerCore

/// The PostgreSQL ``JobStore``: any number of workers on any number of machines share one table.
///
/// - Claims with one `UPDATE ... WHERE id = ANY(ARRAY(SELECT ... FOR UPDATE SKIP LOCKED))` statement.
/// - Runs its claim and outcome statements as named prepared statements (unnamed behind a
///   transaction pooler).
/// - Writes outcomes of many jobs in one statement (`unnest` of arrays), each row conditional on its lease.
/// - An insert trigger sends `NOTIFY`; ``watch(queues:onEvent:)`` LISTENs on a dedicated connection.
/// - All times come from the database's clock (`now()`), so workers' clocks need not agree.
///
/// ``run()`` must run (in the service group) for queries to proceed.
public final class PostgresJobStore: BenchmarkJobStore {
    /// The connection pool of everything but lease renewals.
    public let client: PostgresClient
    /// One connection of its own for lease renewals: in the pool, they waited behind whatever
    /// held its connections (claims, outcome and event writes, the monitor, job API requests,
    /// dashboard pages, event streams), and a renewal that waits past the lease loses it (the
    /// job then runs again elsewhere while it still runs here).
    let leaseClient: PostgresClient
    public let url: PostgresURL
    let schema: PostgresSchema
    let logger: Logger
    /// Suffix of the prepared statements' names; a failed preparation moves on to the next one (see ``rows(of:_:)``).
    let preparedGeneration = Atomic<Int>(0)
    /// The server's bound on each statement (`statement_timeout`), so that a call the worker
    /// gave up on cannot take effect later (``StoreDeadline``); `nil`: the server's default.
    public let statementTimeout: Duration?
    /// Whether a turn that fails for good holds its session (`SESSION_ON_FAILURE`).
    public let sessionOnFailure: SessionFailurePolicy
    /// How often a LISTEN connection is checked, and how long its check may take
    /// (``listen(on:onListening:onNotification:)``).
    public let notificationHeartbeat: Duration

    /// Creates the store for `url` (nothing connects until ``client`` runs).
    /// - Parameters:
    ///   - schema: the schema holding the table (`JOBS_SCHEMA`).
    ///   - table: the jobs table (`JOBS_TABLE`).
    ///   - statementTimeout: the server's bound on each statement of the store's connections
    ///     (`statement_timeout`); keep it below the time the caller waits for a call.
    ///   - sessionOnFailure: whether a turn that fails for good holds its session (`SESSION_ON_FAILURE`).
    ///   - notificationHeartbeat: how often a LISTEN connection is checked; one that does not
    ///     answer within as long again is replaced (the worker passes its renewal interval).
    public init(
        url: PostgresURL, schema: String = "public", table: String = "coding_jobs", maximumConnections: Int = 10,
        statementTimeout: Duration? = nil, sessionOnFailure: SessionFailurePolicy = .continue,
        notificationHeartbeat: Duration = .seconds(10), logger: Logger
    ) throws {
        for (name, value, length) in [("JOBS_SCHEMA", schema, 63), ("JOBS_TABLE", table, Self.maximumTableNameLength)] {
            guard value.range(of: "^[A-Za-z_][A-Za-z0-9_]{0,\(length - 1)}$", options: .regularExpression) != nil else {
                throw PostgresJobStoreError.invalidIdentifier(variable: name, value: value, maxLength: length)
            }
        }
        self.url = url
        self.statementTimeout = statementTimeout
        self.schema = PostgresSchema(schema: schema, table: table, sessionOnFailure: sessionOnFailure)
        self.sessionOnFailure = sessionOnFailure
        self.notificationHeartbeat = max(notificationHeartbeat, .milliseconds(100))
        self.logger = logger
        let unused = url.parameters.keys.filter { !PostgresURL.usedParameters.contains($0) }.sorted()
        if !unused.isEmpty {
            logger.warning("DATABASE_URL has parameters the worker does not use; they are ignored", metadata: [
                "parameters": .string(unused.joined(separator: ", ")),
            ])
        }
        var configuration = PostgresClient.Configuration(
            host: url.host,
            port: url.port,
            username: url.username,
            password: url.password,
            database: url.database,
            tls: Self.tls(for: url)
        )
        configuration.options.maximumConnections = maximumConnections
        configuration.options.minimumConnections = 0
        configuration.options.connectTimeout = .seconds(5)
        configuration.options.additionalStartupParameters = [("application_name", url.parameters["application_name"] ?? "mobvibe-worker")]
        if let statementTimeout, !url.isTransactionPooler {
            // Set for the whole session at connection start (any setting may be a start-up
            // parameter). Transaction poolers refuse unknown start-up parameters; there each
            // bounded call sets it for its own transaction instead (``bounded(_:inTransaction:on:checkingDeadline:_:)``).
            configuration.options.additionalStartupParameters.append(("statement_timeout", "\(statementTimeout.inMilliseconds)"))
        }
        if !url.isTransactionPooler {
            // A transaction of the worker's is never idle for long (its statements follow each
            // other); one left open by a worker cut off mid-way (a partition: no FIN reaches the
            // server) held its locks, an enqueue's on a session's running turn among them, until
            // TCP keepalive gave up on the connection, two hours by Linux's defaults.
            configuration.options.additionalStartupParameters.append(
                ("idle_in_transaction_session_timeout", "\(Self.idleInTransactionTimeout.inMilliseconds)"))
        }
        var clientLogger = logger
        // The pool's own messages are noisy (it warns when a query races its start-up); the store
        // logs what matters (unreachable database, lost notifications) itself.
        clientLogger.logLevel = max(logger.logLevel, .error)
        client = PostgresClient(configuration: configuration, backgroundLogger: clientLogger)
        configuration.options.maximumConnections = 1
        leaseClient = PostgresClient(configuration: configuration, backgroundLogger: clientLogger)
    }

    /// How long the server lets one of the worker's transactions sit idle before it ends it.
    static let idleInTransactionTimeout = Duration.seconds(60)

    /// Runs the store's connection pools until cancelled: run it beside the store's users (in the
    /// service group), or no query proceeds.
    public func run() async {
        await withDiscardingTaskGroup { group in
            group.addTask { await self.client.run() }
            group.addTask { await self.leaseClient.run() }
        }
    }

    static func tls(for url: PostgresURL) -> PostgresClient.Configuration.TLS {
        guard let configuration = tlsConfiguration(for: url) else { return .disable }
        return url.sslMode == .prefer ? .prefer(configuration) : .require(configuration)
    }

    /// TLS as libpq's `sslmode` and `sslrootcert` ask for it (`nil`: none). Before, `sslrootcert`
    /// was read by nothing: a provider's `sslmode=require&sslrootcert=ca.crt`, which libpq
    /// verifies against that authority, connected with no verification at all, and
    /// `verify-full` checked the system's roots, where a private authority is not.
    static func tlsConfiguration(for url: PostgresURL) -> TLSConfiguration? {
        var configuration = TLSConfiguration.makeClientConfiguration()
        if let file = url.sslRootCertificate, file != "system" { configuration.trustRoots = .file(file) }
        switch url.sslMode {
        case .disable:
            return nil
        case .prefer:
            configuration.certificateVerification = .none
        case .require:
            configuration.certificateVerification = url.sslRootCertificate == nil ? .none : .noHostnameVerification
        case .verifyCA:
            configuration.certificateVerification = .noHostnameVerification
        case .verifyFull:
            configuration.certificateVerification = .fullVerification
        }
        return configuration
    }

    /// The longest jobs table name: PostgreSQL cuts names at 63 bytes, and the longest name made
    /// from the table's (`<table>_session_hold_insert`, its triggers, indexes, channels and
    /// events table) adds 20. A longer name was cut silently, and its NOTIFY channel refused
    /// ("channel name too long"), failing every insert.
    public static let maximumTableNameLength = 43

    var table: String { schema.table }

    /// Runs one of the hot statements and reads all its rows: as a named prepared statement, or as
    /// an unnamed one behind a transaction pooler (which may hand each transaction another server
    /// connection, where a prepared statement does not exist).
    ///
    /// With `inTransaction` the statement runs between `BEGIN` and `COMMIT` of its own, so that a
    /// commit that fails is the `COMMIT`'s error (see ``enqueue(_:)``).
    func rows(of statement: StoreStatement.Text, _ bindings: PostgresBindings, inTransaction: Bool = false) async throws -> [PostgresRow] {
        if url.isTransactionPooler {
            return try await bounded(statement.name, inTransaction: inTransaction) { connection in
                try await connection.query(PostgresQuery(unsafeSQL: statement.sql, binds: bindings), logger: logger).collect()
            }
        }
        let generation = preparedGeneration.load(ordering: .relaxed)
        let named = StoreStatement.Text(name: "\(statement.name)_\(generation)", sql: statement.sql)
        do {
            return try await bounded(statement.name, inTransaction: inTransaction) { connection in
                try await StoreStatement.$current.withValue(named) {
                    var rows: [PostgresRow] = []
                    for try await row in try await connection.execute(StoreStatement(bindings: bindings), logger: logger) {
                        rows.append(row)
                    }
                    return rows
                }
            }
        } catch {
            // PostgresNIO answers every later use of a name whose preparation failed on a connection
            // with that failure, and a schema change can leave a prepared statement unusable
            // ("cached plan must not change result type"). So after a failure that may have been
            // the preparation's the next calls prepare afresh under a new name; the caller retries
            // as it does for any store error. Which step failed is not reported, and a preparation
            // can fail with nearly anything (a timeout while it waits for a table lock, too), but
            // not with a refused value: values reach the server only with the execution. So a
            // refused value (retried once per split of its batch) keeps the name, and no
            // statement is prepared again for it.
            if Self.mayBreakPreparedStatement(error) {
                _ = preparedGeneration.compareExchange(expected: generation, desired: generation + 1, ordering: .relaxed)
            }
            throw error
        }
    }

    /// Whether `error` may come from a preparation: anything but a value the server refused
    /// (SQLSTATE classes 22 and 54) or a row that broke a constraint (class 23: an ending event
    /// stored already, see ``recordCompletions(_:)``), which only an execution sees.
    ///
    /// Nor an error without a server's SQLSTATE (a connection lost, or closed as its call was
    /// abandoned: it is not lent again, and a statement's name belongs to its connection), a
    /// call never sent (its deadline too near), or a deadlock or serialization failure (row
    /// locks: an execution's). Each new name is prepared again on every connection and the old
    /// ones stay on the server, so bumping it on every outage's errors grew every backend.
    static func mayBreakPreparedStatement(_ error: any Error) -> Bool {
        guard let state = sqlState(of: error) else { return false }
        return !(state.hasPrefix("22") || state.hasPrefix("23") || state.hasPrefix("54") || state == "40P01" || state == "40001")
    }

    /// Whether `error` is a unique violation (SQLSTATE 23505): for the hot statements, events
    /// stored already, written again in the statement's skipping form.
    static func isUniqueViolation(_ error: any Error) -> Bool {
        sqlState(of: error) == "23505"
    }

    /// The SQLSTATE of a server error, looking inside transaction errors.
    static func sqlState(of error: any Error) -> String? {
        if let error = error as? PostgresTransactionError {
            return [error.closureError, error.beginError, error.commitError].lazy.compactMap { $0.flatMap(sqlState(of:)) }.first
        }
        return (error as? PSQLError)?.serverInfo?[.sqlState]
    }

    /// Runs `body` on a pooled connection, bounded on the server by ``statementTimeout``, once
    /// the caller's deadline (``StoreDeadline``) leaves time for that bound: a call the caller
    /// already gave up on (or would give up on before the server's answer) is never sent.
    /// Behind a transaction pooler the bound is set for one transaction around `body`; with
    /// `inTransaction`, `body` runs in a transaction of its own everywhere.
    ///
    /// `checkingDeadline: false` sends the call whatever time the caller has left (reads and
    /// operator actions, which went straight to the pool before: the monitor's statistics, with
    /// a deadline shorter than the statement bound, were otherwise never sent).
    func bounded<T: Sendable>(
        _ operation: String, inTransaction: Bool = false, on pool: PostgresClient? = nil, checkingDeadline: Bool = true,
        _ body: (PostgresConnection) async throws -> T
    ) async throws -> T {
        let client = pool ?? self.client
        let ensureTime = { (bound: Duration) throws in
            if checkingDeadline { try StoreDeadline.ensureTime(for: bound, operation: operation) } else if Task.isCancelled { throw CancellationError() }
        }
        if url.isTransactionPooler, let statementTimeout {
            return try await client.withTransaction(logger: logger) { connection in
                try ensureTime(statementTimeout)
                return try await withTaskCancellationHandler {
                    _ = try await connection.query(
                        PostgresQuery(unsafeSQL: "SET LOCAL statement_timeout = \(statementTimeout.inMilliseconds)"), logger: logger)
                    return try await Self.leavingReadOnly(connection) { try await body(connection) }
                } onCancel: {
                    Self.abandon(connection)
                }
            }
        }
        if inTransaction {
            return try await client.withTransaction(logger: logger) { connection in
                try ensureTime(statementTimeout ?? .zero)
                return try await withTaskCancellationHandler {
                    try await Self.leavingReadOnly(connection) { try await body(connection) }
                } onCancel: { Self.abandon(connection) }
            }
        }
        return try await client.withConnection { connection in
            try ensureTime(statementTimeout ?? .zero)
            return try await withTaskCancellationHandler {
                try await Self.leavingReadOnly(connection) { try await body(connection) }
            } onCancel: { Self.abandon(connection) }
        }
    }

    /// Runs `body` on `connection`, and closes the connection when the server answers that it
    /// cannot write (SQLSTATE 25006): after a failover its address may still lead to the old
    /// primary, now a replica. The pool kept such a connection for good, and every claim,
    /// renewal and outcome write on it failed long after the new primary was reachable; closed,
    /// the pool opens a new one, which looks the address up again.
    static func leavingReadOnly<T>(_ connection: PostgresConnection, _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch {
            if sqlState(of: error) == "25006" { abandon(connection) }
            throw error
        }
    }

    /// Runs `query` on a pooled connection through ``bounded(_:inTransaction:on:checkingDeadline:_:)`` and reads
    /// all its rows: a caller that is cancelled (a service told to stop, a time-out) closes the
    /// connection instead of waiting for a server that may never answer. Before, the CLI's,
    /// the monitor's, the dashboard's and retention's statements went straight to the pool: one
    /// on a connection that died without a reset held it for good, and retention's held up the
    /// worker's shutdown until it was killed.
    func query(_ operation: String, _ query: PostgresQuery) async throws -> [PostgresRow] {
        try await bounded(operation, checkingDeadline: false) { connection in try await connection.query(query, logger: logger).collect() }
    }

    /// Closes `connection`, whose call was abandoned: ``bounded(_:inTransaction:on:checkingDeadline:_:)`` calls it
    /// should the calling task be cancelled meanwhile (``withTimeout(_:operation:_:)`` cancels a
    /// call its caller gave up on).
    ///
    /// PostgresNIO cannot cancel a statement, and a connection that died without a reset (a
    /// failover that moved the server's address, a partition) answers nothing, ever: the
    /// statement bound cannot end a statement on a server that is gone. The call then held its
    /// connection for the life of the process, and on the lease client, which has one, every
    /// renewal after it timed out while other workers' rescues ran this worker's jobs again.
    /// Closed, the statement fails at once and the pool opens a new connection.
    static func abandon(_ connection: PostgresConnection) {
        let _: EventLoopFuture<Void> = connection.close()
    }

    // MARK: - Producing

    public func enqueue(_ jobs: [NewJob]) async throws -> [UUID] {
        try await translatingErrors {
            guard !jobs.isEmpty else { return [] }
            for job in jobs { try job.validate() }
            let ids = UUID.timeOrdered(count: jobs.count)
            // Rows go in by session (turn order within one is the ids' order, which stays), so
            // that the session triggers of concurrent batches take the sessions' locks in one
            // order; a batch of jobs without sessions keeps its order.
            var order = Array(jobs.indices)
            if jobs.contains(where: { $0.sessionID != nil }) {
                order.sort { (jobs[$0].sessionID?.uuidString ?? "", $0) < (jobs[$1].sessionID?.uuidString ?? "", $1) }
            }
            // -1: now, by the database's clock.
            var bindings = PostgresBindings(capacity: 9)
            bindings.append(order.map { ids[$0] })
            bindings.append(order.map { jobs[$0].queue })
            bindings.append(order.map { jobs[$0].sessionID?.uuidString ?? "" })
            bindings.append(order.map { jobs[$0].prompt })
            bindings.append(order.map { jobs[$0].payload })
            bindings.append(order.map { jobs[$0].priority })
            bindings.append(order.map { jobs[$0].runAt?.timeIntervalSince1970 ?? -1 })
            bindings.append(order.map { jobs[$0].maxAttempts })
            bindings.append(order.map { jobs[$0].userID?.uuidString ?? "" })
            // In a transaction of its own, so that the commit is a statement the server answers
            // by itself. As one statement (the implicit transaction's commit after the
            // statement's CommandComplete) PostgresNIO took the statement as done before the
            // commit: a commit that failed (a deferred constraint or trigger of the user's, a
            // server that stopped in that instant) handed out ids of jobs that did not exist,
            // and in about a third of such failures the call, or the next on that connection,
            // was never answered. A `COMMIT` answered means the jobs are stored.
            do {
                try await Self.retryingDeadlocks {
                    _ = try await rows(of: schema.enqueueStatement, bindings, inTransaction: true)
                }
            } catch let error as PostgresTransactionError where error.commitError != nil && Self.sqlState(of: error) == nil {
                // The `COMMIT` was sent and its answer lost with the connection: stored or not,
                // only the table can say. (Reported as not written, a caller enqueued the jobs
                // again, and they ran twice.)
                return try await idsAfterLostCommit(ids, error: error)
            }
            return ids
        }
    }

    /// Whether job `id` is stored, once a transaction still inserting it has ended (the server may
    /// still be committing the enqueue whose answer was lost: a plain read would not see it yet):
    /// an insert of the same id waits on the primary key for that transaction, then conflicts
    /// if it committed. The probe's transaction is rolled back, its row never kept.
    private func isStored(_ id: UUID) async throws -> Bool {
        struct Probed: Error { let conflicted: Bool }
        do {
            _ = try await bounded("enqueue check", inTransaction: true) { connection -> Bool in
                let rows = try await connection.query(
                    "INSERT INTO \(unescaped: table) (id, prompt) VALUES (\(id), '') ON CONFLICT (id) DO NOTHING RETURNING id", logger: logger
                ).collect()
                throw Probed(conflicted: rows.isEmpty)
            }
        } catch let error as PostgresTransactionError {
            if let probed = error.closureError as? Probed { return probed.conflicted }
            throw error
        } catch let probed as Probed {
            return probed.conflicted
        }
        return false
    }

    /// The answer to an enqueue whose commit's answer was lost: `ids` when the jobs are stored,
    /// the commit's error when none is, ``JobStoreError/enqueueOutcomeUnknown(firstID:count:reason:)``
    /// when the table cannot be asked.
    private func idsAfterLostCommit(_ ids: [UUID], error: PostgresTransactionError) async throws -> [UUID] {
        let reason = Self.describe(error)
        let stored: Bool
        do {
            // The jobs went in in one transaction: all of them are stored, or none.
            stored = try await withTimeout(.seconds(30), operation: "looking for the enqueued jobs") { [self] in
                try await self.isStored(ids[0])
            }
        } catch {
            throw JobStoreError.enqueueOutcomeUnknown(firstID: ids[0], count: ids.count, reason: reason)
        }
        if stored {
            logger.warning("The commit of an enqueue was not answered, but its jobs are stored", metadata: [
                "jobs": .stringConvertible(ids.count), "error": .string(reason),
            ])
            return ids
        }
        throw error
    }

    /// Runs `body` again (up to twice) when PostgreSQL broke a deadlock by aborting it: the
    /// session triggers of two statements touching the same sessions in different orders (a
    /// producer's batch and an operator's cancel, say) can wait for each other. The aborted
    /// statement changed nothing, so running it again is safe.
    static func retryingDeadlocks<T>(_ body: () async throws -> T) async throws -> T {
        var attempt = 1
        while true {
            do {
                return try await body()
            } catch where attempt < 3 && sqlState(of: error) == "40P01" {
                attempt += 1
            }
        }
    }

    // MARK: - Working

    public func claim(queues: [String], limit: Int, workerID: String, leaseDuration: Duration) async throws -> [ClaimedJob] {
        try await translatingErrors {
            guard limit > 0, !queues.isEmpty else { return [] }
            var bindings = PostgresBindings(capacity: 4)
            bindings.append(queues)
            bindings.append(limit)
            bindings.append(workerID)
            bindings.append(Int(leaseDuration.inMilliseconds))
            let rows: [PostgresRow]
            do {
                rows = try await self.rows(of: schema.claimStatement, bindings)
            } catch where Self.isUniqueViolation(error) {
                logger.warning("A claimed job had an event numbered as its `claimed` event would be (written by hand?); claiming again without those events")
                rows = try await self.rows(of: schema.claimAgainStatement, bindings)
            }
            var claimed: [ClaimedJob] = []
            claimed.reserveCapacity(rows.count)
            for row in rows {
                do {
                    claimed.append(try Self.decodeClaimed(row, workerID: workerID))
                } catch {
                    // The claim has committed: the rows that could be read run whatever becomes
                    // of this one (a failure here lost the whole batch to the rescue, each job
                    // with an attempt used).
                    do {
                        try await failUndecodable(row: row, error: error)
                    } catch {
                        logger.error("Could not mark an unreadable claimed row failed; it returns when its lease runs out", metadata: ["error": "\(error)"])
                    }
                }
            }
            claimed.sortIntoClaimOrder()
            return claimed
        }
    }

    /// A claimed row that cannot be read as a job is failed at once, so it is never claimed again.
    private func failUndecodable(row: PostgresRow, error: any Error) async throws {
        guard let id = try? PostgresRandomAccessRow(row)[0].decode(UUID.self) else {
            logger.error("Claimed a job row without a readable id", metadata: ["error": "\(error)"])
            return
        }
        let message = "job row cannot be read: \(error)"
        logger.error("Job row cannot be read; marking it failed", metadata: ["jobId": .string(id.lowercasedText), "error": .string(message)])
        try await client.query(
            """
            UPDATE \(unescaped: table) SET status = 'failed', last_error = \(Self.storableText(message)), completed_at = now(),
                locked_by = NULL, lease_expires_at = NULL
            WHERE id = \(id)
            """,
            logger: logger
        )
    }

    public func record(_ completions: [JobCompletion]) async throws -> [Bool] {
        try await translatingErrors {
            guard !completions.isEmpty else { return [] }
            // Rows are locked in the order of the arrays: in id order, as the renewal locks them,
            // so that an outcome write and a renewal of the same worker's jobs cannot deadlock.
            let ordered = completions.sorted { $0.lease.jobID.precedes($1.lease.jobID) }
            let written = try await recordOrdered(ordered)
            var applied = Set<UUID>()
            for (completion, done) in zip(ordered, written) where done { applied.insert(completion.lease.jobID) }
            return completions.map { applied.contains($0.lease.jobID) }
        }
    }

    private func recordOrdered(_ completions: [JobCompletion]) async throws -> [Bool] {
        if let completed = try await recordCompletions(completions) { return completed }
        var ids: [UUID] = [], workers: [String] = [], attempts: [Int] = [], kinds: [String] = []
        var results: [String] = [], errors: [String] = [], delays: [Int] = []
        var eventSequences: [Int64] = [], eventData: [String] = [], follows: [Int64] = []
        var usage = UsageColumns()
        for completion in completions {
            usage.append(completion.usage)
            eventSequences.append(completion.event?.sequence ?? 0)
            follows.append(completion.event?.follows ?? 0)
            eventData.append(completion.event?.data ?? "")
            ids.append(completion.lease.jobID)
            workers.append(completion.lease.workerID)
            attempts.append(completion.lease.attempt)
            switch completion.outcome {
            case .completed(let result):
                kinds.append("completed"); results.append(result); errors.append(""); delays.append(0)
            case .retry(let error, let delay):
                kinds.append("retry"); results.append(""); errors.append(error); delays.append(Int(delay.inMilliseconds))
            case .failed(let error):
                kinds.append("failed"); results.append(""); errors.append(error); delays.append(0)
            case .released:
                kinds.append("released"); results.append(""); errors.append(""); delays.append(0)
            case .deferred(let reason, let delay):
                kinds.append("deferred"); results.append(""); errors.append(reason); delays.append(Int(delay.inMilliseconds))
            }
        }
        var bindings = PostgresBindings(capacity: 17)
        bindings.append(ids)
        bindings.append(workers)
        bindings.append(attempts)
        bindings.append(kinds)
        bindings.append(results)
        bindings.append(errors)
        bindings.append(delays)
        bindings.append(JobStatus.processing.rawValue)
        bindings.append(eventSequences)
        bindings.append(eventData)
        usage.bind(to: &bindings)
        bindings.append(follows)
        return try Self.applied(ids, returned: try await rows(of: schema.recordStatement, bindings))
    }

    /// Records a batch of completions by one worker (a busy worker's usual batch) with the
    /// narrower statement; `nil` for any other batch, and for one of whose ending events one is
    /// stored already (the statement then stored nothing, see ``PostgresSchema/completeStatement``):
    /// the general statement writes it.
    private func recordCompletions(_ completions: [JobCompletion]) async throws -> [Bool]? {
        let workerID = completions[0].lease.workerID
        var ids: [UUID] = [], attempts: [Int] = [], results: [String] = [], eventSequences: [Int64] = [], eventData: [String] = []
        var follows: [Int64] = []
        var usage = UsageColumns()
        follows.reserveCapacity(completions.count)
        ids.reserveCapacity(completions.count)
        attempts.reserveCapacity(completions.count)
        results.reserveCapacity(completions.count)
        eventSequences.reserveCapacity(completions.count)
        eventData.reserveCapacity(completions.count)
        for completion in completions {
            guard case .completed(let result) = completion.outcome, completion.lease.workerID == workerID else { return nil }
            ids.append(completion.lease.jobID)
            attempts.append(completion.lease.attempt)
            results.append(result)
            eventSequences.append(completion.event?.sequence ?? 0)
            eventData.append(completion.event?.data ?? "")
            follows.append(completion.event?.follows ?? 0)
            usage.append(completion.usage)
        }
        var bindings = PostgresBindings(capacity: 14)
        bindings.append(ids)
        bindings.append(attempts)
        bindings.append(results)
        bindings.append(workerID)
        bindings.append(JobStatus.processing.rawValue)
        bindings.append(eventSequences)
        bindings.append(eventData)
        usage.bind(to: &bindings)
        bindings.append(follows)
        do {
            return try Self.applied(ids, returned: try await rows(of: schema.completeStatement, bindings))
        } catch where Self.isUniqueViolation(error) {
            logger.debug("An ending event of this batch was stored already; writing the batch with the general statement")
            return nil
        }
    }

    /// Whether each of `ids` was applied by an outcome write that returned the ids it applied.
    private static func applied(_ ids: [UUID], returned rows: [PostgresRow]) throws -> [Bool] {
        var applied = Set<UUID>()
        for row in rows { applied.insert(try row.decode(UUID.self)) }
        return ids.map { applied.contains($0) }
    }

    public func ping() async throws {
        try await translatingErrors {
            _ = try await client.query("SELECT 1", logger: logger).collect()
        }
    }

    public func close() async throws {}
}
