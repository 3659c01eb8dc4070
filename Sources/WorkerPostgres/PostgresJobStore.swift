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
/// The ``client`` must run as a service (in the service group) for queries to proceed.
public final class PostgresJobStore: BenchmarkJobStore {
    /// The connection pool; run it in the service group.
    public let client: PostgresClient
    public let url: PostgresURL
    let schema: PostgresSchema
    let logger: Logger
    /// Suffix of the prepared statements' names; a failed preparation moves on to the next one (see ``rows(of:_:)``).
    private let preparedGeneration = Atomic<Int>(0)
    /// The server's bound on each statement (`statement_timeout`), so that a call the worker
    /// gave up on cannot take effect later (``StoreDeadline``); `nil`: the server's default.
    public let statementTimeout: Duration?

    /// Creates the store for `url` (nothing connects until ``client`` runs).
    /// - Parameters:
    ///   - schema: the schema holding the table (`JOBS_SCHEMA`).
    ///   - table: the jobs table (`JOBS_TABLE`).
    ///   - statementTimeout: the server's bound on each statement of the store's connections
    ///     (`statement_timeout`); keep it below the time the caller waits for a call.
    public init(
        url: PostgresURL, schema: String = "public", table: String = "coding_jobs", maximumConnections: Int = 10,
        statementTimeout: Duration? = nil, logger: Logger
    ) throws {
        for (name, value) in [("JOBS_SCHEMA", schema), ("JOBS_TABLE", table)] {
            guard value.range(of: "^[A-Za-z_][A-Za-z0-9_]{0,62}$", options: .regularExpression) != nil else {
                throw PostgresJobStoreError.invalidIdentifier(variable: name, value: value)
            }
        }
        self.url = url
        self.statementTimeout = statementTimeout
        self.schema = PostgresSchema(schema: schema, table: table)
        self.logger = logger
        var configuration = PostgresClient.Configuration(
            host: url.host,
            port: url.port,
            username: url.username,
            password: url.password,
            database: url.database,
            tls: Self.tls(for: url.sslMode)
        )
        configuration.options.maximumConnections = maximumConnections
        configuration.options.minimumConnections = 0
        configuration.options.connectTimeout = .seconds(5)
        configuration.options.additionalStartupParameters = [("application_name", url.parameters["application_name"] ?? "mobvibe-worker")]
        if let statementTimeout, !url.isTransactionPooler {
            // Set for the whole session at connection start (any setting may be a start-up
            // parameter). Transaction poolers refuse unknown start-up parameters; there each
            // bounded call sets it for its own transaction instead (``bounded(_:_:)``).
            configuration.options.additionalStartupParameters.append(("statement_timeout", "\(statementTimeout.inMilliseconds)"))
        }
        var clientLogger = logger
        // The pool's own messages are noisy (it warns when a query races its start-up); the store
        // logs what matters (unreachable database, lost notifications) itself.
        clientLogger.logLevel = max(logger.logLevel, .error)
        client = PostgresClient(configuration: configuration, backgroundLogger: clientLogger)
    }

    static func tls(for mode: PostgresURL.SSLMode) -> PostgresClient.Configuration.TLS {
        var unverified = TLSConfiguration.makeClientConfiguration()
        unverified.certificateVerification = .none
        switch mode {
        case .disable: return .disable
        case .prefer: return .prefer(unverified)
        case .require: return .require(unverified)
        case .verifyFull: return .require(.makeClientConfiguration())
        }
    }

    private var table: String { schema.table }

    /// Runs one of the hot statements and reads all its rows: as a named prepared statement, or as
    /// an unnamed one behind a transaction pooler (which may hand each transaction another server
    /// connection, where a prepared statement does not exist).
    private func rows(of statement: StoreStatement.Text, _ bindings: PostgresBindings) async throws -> [PostgresRow] {
        if url.isTransactionPooler {
            return try await bounded(statement.name) { connection in
                try await connection.query(PostgresQuery(unsafeSQL: statement.sql, binds: bindings), logger: logger).collect()
            }
        }
        let generation = preparedGeneration.load(ordering: .relaxed)
        let named = StoreStatement.Text(name: "\(statement.name)_\(generation)", sql: statement.sql)
        do {
            return try await bounded(statement.name) { connection in
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
    /// (SQLSTATE classes 22 and 54), which only an execution sees.
    static func mayBreakPreparedStatement(_ error: any Error) -> Bool {
        guard let state = sqlState(of: error) else { return true }
        return !(state.hasPrefix("22") || state.hasPrefix("54"))
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
    /// Behind a transaction pooler the bound is set for one transaction around `body`.
    private func bounded<T>(_ operation: String, _ body: (PostgresConnection) async throws -> T) async throws -> T {
        if url.isTransactionPooler, let statementTimeout {
            return try await client.withTransaction(logger: logger) { connection in
                try StoreDeadline.ensureTime(for: statementTimeout, operation: operation)
                _ = try await connection.query(
                    PostgresQuery(unsafeSQL: "SET LOCAL statement_timeout = \(statementTimeout.inMilliseconds)"), logger: logger)
                return try await body(connection)
            }
        }
        return try await client.withConnection { connection in
            try StoreDeadline.ensureTime(for: statementTimeout ?? .zero, operation: operation)
            return try await body(connection)
        }
    }

    // MARK: - Schema

    public func migrate() async throws {
        try await translatingErrors {
            // Most starts find the schema current: one read and no DDL, so a role with only
            // SELECT, INSERT, UPDATE and DELETE on a migrated table starts fine.
            let recorded = try await recordedVersion()
            if recorded > PostgresSchema.version {
                throw JobStoreError.schemaTooNew(found: recorded, supported: PostgresSchema.version)
            }
            guard recorded < PostgresSchema.version else { return }
            try await client.withTransaction(logger: logger) { connection in
                // A migration may rewrite or validate a big table: no statement bound for it.
                _ = try await connection.query("SET LOCAL statement_timeout = 0", logger: logger)
                _ = try await connection.query("SELECT pg_advisory_xact_lock(hashtext(\(schema.lockKey)))", logger: logger)
                _ = try await connection.query(
                    PostgresQuery(unsafeSQL: "CREATE SCHEMA IF NOT EXISTS \"\(schema.schemaName)\""), logger: logger)
                _ = try await connection.query(
                    PostgresQuery(unsafeSQL: """
                        CREATE TABLE IF NOT EXISTS \(schema.migrationsTable) (
                            table_name text NOT NULL, version integer NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(),
                            PRIMARY KEY (table_name, version))
                        """),
                    logger: logger
                )
                // Again under the lock: another worker may have migrated meanwhile.
                let rows = try await connection.query(
                    "SELECT coalesce(max(version), 0) FROM \(unescaped: schema.migrationsTable) WHERE table_name = \(schema.tableName)",
                    logger: logger
                ).collect()
                let current = try rows.first?.decode(Int.self) ?? 0
                if current > PostgresSchema.version {
                    throw JobStoreError.schemaTooNew(found: current, supported: PostgresSchema.version)
                }
                guard current < PostgresSchema.version else { return }
                for version in (current + 1)...PostgresSchema.version {
                    for statement in schema.migrations[version] ?? [] {
                        _ = try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                    }
                    _ = try await connection.query(
                        "INSERT INTO \(unescaped: schema.migrationsTable) (table_name, version) VALUES (\(schema.tableName), \(version))",
                        logger: logger
                    )
                    logger.info("Applied schema migration", metadata: ["version": .stringConvertible(version), "table": .string(table)])
                }
            }
            try await warnAboutUnvalidatedChecks()
        }
    }

    public func verifySchema() async throws {
        try await translatingErrors {
            let recorded = try await recordedVersion()
            if recorded > PostgresSchema.version {
                throw JobStoreError.schemaTooNew(found: recorded, supported: PostgresSchema.version)
            }
            if recorded < PostgresSchema.version {
                throw JobStoreError.notPermitted(
                    recorded == 0
                        ? "the jobs table \(table) has no schema yet and AUTO_MIGRATE=false: run `worker migrate` once (as a role that may create it), or set AUTO_MIGRATE=true"
                        : "the jobs table \(table) is at schema version \(recorded) but this worker needs \(PostgresSchema.version), and AUTO_MIGRATE=false: run `worker migrate` once (as the table's owner), or set AUTO_MIGRATE=true"
                )
            }
        }
    }

    /// The schema version recorded for this table: 0 when nothing is recorded (or the
    /// migrations table does not exist). A read only, which any role that can use the table may do.
    private func recordedVersion() async throws -> Int {
        let exists = try await client.query(
            "SELECT to_regclass(\(schema.migrationsTable)) IS NOT NULL", logger: logger
        ).collect().first?.decode(Bool.self) ?? false
        guard exists else { return 0 }
        return try await client.query(
            "SELECT coalesce(max(version), 0) FROM \(unescaped: schema.migrationsTable) WHERE table_name = \(schema.tableName)",
            logger: logger
        ).collect().first?.decode(Int.self) ?? 0
    }

    /// Logs the table checks that existing rows kept from being validated (they hold for new rows).
    private func warnAboutUnvalidatedChecks() async throws {
        let rows = try await client.query(
            """
            SELECT conname::text FROM pg_constraint
            WHERE conrelid = to_regclass(\(table)) AND contype = 'c' AND NOT convalidated
            ORDER BY conname
            """,
            logger: logger
        ).collect()
        for row in rows {
            let name = try row.decode(String.self)
            logger.warning(
                "Existing rows violate a check of the jobs table; it holds for new and updated rows only until they are fixed",
                metadata: [
                    "constraint": .string(name), "table": .string(table),
                    "fix": .string("correct the rows, then ALTER TABLE \(table) VALIDATE CONSTRAINT \"\(name)\""),
                ]
            )
        }
    }

    // MARK: - Producing

    public func enqueue(_ jobs: [NewJob]) async throws -> [UUID] {
        try await translatingErrors {
            guard !jobs.isEmpty else { return [] }
            for job in jobs { try job.validate() }
            let ids = UUID.timeOrdered(count: jobs.count)
            // -1: now, by the database's clock.
            let runAts: [Double] = jobs.map { $0.runAt?.timeIntervalSince1970 ?? -1 }
            var bindings = PostgresBindings(capacity: 8)
            bindings.append(ids)
            bindings.append(jobs.map(\.queue))
            bindings.append(jobs.map { $0.sessionID?.uuidString ?? "" })
            bindings.append(jobs.map(\.prompt))
            bindings.append(jobs.map(\.payload))
            bindings.append(jobs.map(\.priority))
            bindings.append(runAts)
            bindings.append(jobs.map(\.maxAttempts))
            _ = try await rows(of: schema.enqueueStatement, bindings)
            return ids
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
            let rows = try await rows(of: schema.claimStatement, bindings)
            var claimed: [ClaimedJob] = []
            claimed.reserveCapacity(rows.count)
            for row in rows {
                do {
                    claimed.append(try Self.decodeClaimed(row, workerID: workerID))
                } catch {
                    try await failUndecodable(row: row, error: error)
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
        logger.error("Job row cannot be read; marking it failed", metadata: ["jobId": .string(id.uuidString.lowercased()), "error": .string(message)])
        try await client.query(
            """
            UPDATE \(unescaped: table) SET status = 'failed', last_error = \(Self.storableText(message)), completed_at = now(),
                locked_by = NULL, lease_expires_at = NULL
            WHERE id = \(id)
            """,
            logger: logger
        )
    }

    public func renew(_ leases: [Lease], duration: Duration) async throws -> [UUID: LeaseState] {
        try await translatingErrors {
            guard !leases.isEmpty else { return [:] }
            let rows = try await bounded("lease renewal") { connection in try await connection.query(
                """
                WITH input AS (
                    SELECT * FROM unnest(\(leases.map(\.jobID))::uuid[], \(leases.map(\.workerID))::text[], \(leases.map(\.attempt))::int[])
                        AS t(id, worker, attempt)
                ), renewed AS (
                    UPDATE \(unescaped: table) AS j SET lease_expires_at = now() + \(duration.inMilliseconds) * interval '1 millisecond'
                    FROM input
                    WHERE j.id = input.id AND j.status = 'processing' AND j.locked_by = input.worker AND j.attempts = input.attempt
                    RETURNING j.id
                )
                SELECT input.id, renewed.id IS NOT NULL, coalesce(current.status, '')
                FROM input
                LEFT JOIN renewed ON renewed.id = input.id
                LEFT JOIN \(unescaped: table) AS current ON current.id = input.id
                """,
                logger: logger
            ).collect() }
            var states: [UUID: LeaseState] = [:]
            for row in rows {
                let (id, held, status) = try row.decode((UUID, Bool, String).self)
                states[id] = held ? .held : (status == JobStatus.cancelled.rawValue ? .cancelled : .lost)
            }
            return states
        }
    }

    public func record(_ completions: [JobCompletion]) async throws -> [Bool] {
        try await translatingErrors {
            guard !completions.isEmpty else { return [] }
            if let completed = try await recordCompletions(completions) { return completed }
            var ids: [UUID] = [], workers: [String] = [], attempts: [Int] = [], kinds: [String] = []
            var results: [String] = [], errors: [String] = [], delays: [Int] = []
            for completion in completions {
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
                }
            }
            var bindings = PostgresBindings(capacity: 8)
            bindings.append(ids)
            bindings.append(workers)
            bindings.append(attempts)
            bindings.append(kinds)
            bindings.append(results)
            bindings.append(errors)
            bindings.append(delays)
            bindings.append(JobStatus.processing.rawValue)
            return try Self.applied(ids, returned: try await rows(of: schema.recordStatement, bindings))
        }
    }

    /// Records a batch of completions by one worker (a busy worker's usual batch) with the
    /// narrower statement; `nil` for any other batch.
    private func recordCompletions(_ completions: [JobCompletion]) async throws -> [Bool]? {
        let workerID = completions[0].lease.workerID
        var ids: [UUID] = [], attempts: [Int] = [], results: [String] = []
        ids.reserveCapacity(completions.count)
        attempts.reserveCapacity(completions.count)
        results.reserveCapacity(completions.count)
        for completion in completions {
            guard case .completed(let result) = completion.outcome, completion.lease.workerID == workerID else { return nil }
            ids.append(completion.lease.jobID)
            attempts.append(completion.lease.attempt)
            results.append(result)
        }
        var bindings = PostgresBindings(capacity: 5)
        bindings.append(ids)
        bindings.append(attempts)
        bindings.append(results)
        bindings.append(workerID)
        bindings.append(JobStatus.processing.rawValue)
        return try Self.applied(ids, returned: try await rows(of: schema.completeStatement, bindings))
    }

    /// Whether each of `ids` was applied by an outcome write that returned the ids it applied.
    private static func applied(_ ids: [UUID], returned rows: [PostgresRow]) throws -> [Bool] {
        var applied = Set<UUID>()
        for row in rows { applied.insert(try row.decode(UUID.self)) }
        return ids.map { applied.contains($0) }
    }

    public func rescueExpiredLeases(sparing running: [UUID]) async throws -> [RescuedJob] {
        try await translatingErrors {
            let rows = try await bounded("rescue") { connection in try await connection.query(
                """
                UPDATE \(unescaped: table) AS j SET
                    status = CASE WHEN e.attempts >= e.max_attempts THEN 'failed' ELSE 'pending' END,
                    last_error = 'lease expired: worker ' || coalesce(e.locked_by, 'unknown') || ' stopped renewing it during attempt ' || e.attempts,
                    completed_at = CASE WHEN e.attempts >= e.max_attempts THEN now() ELSE NULL END,
                    locked_by = NULL, lease_expires_at = NULL
                FROM (
                    SELECT id, locked_by, attempts, max_attempts FROM \(unescaped: table)
                    WHERE status = 'processing' AND lease_expires_at < now() AND NOT (id = ANY(\(running)::uuid[]))
                    FOR UPDATE SKIP LOCKED
                ) AS e
                WHERE j.id = e.id
                RETURNING j.id, j.queue, j.session_id, e.locked_by, e.attempts, j.status
                """,
                logger: logger
            ).collect() }
            var rescued: [RescuedJob] = []
            for row in rows {
                let (id, queue, session, worker, attempt, status) = try row.decode((UUID, String, UUID?, String?, Int, String).self)
                rescued.append(RescuedJob(id: id, queue: queue, sessionID: session, previousWorker: worker, attempt: attempt, newStatus: JobStatus(rawValue: status) ?? .pending))
            }
            if rescued.contains(where: { $0.newStatus == .pending }) { try? await notify("jobs") }
            return rescued
        }
    }

    // MARK: - Administration

    public func job(id: UUID) async throws -> Job? {
        try await translatingErrors {
            let rows = try await client.query(
                "SELECT \(unescaped: PostgresSchema.columns) FROM \(unescaped: table) WHERE id = \(id)",
                logger: logger
            ).collect()
            return try rows.first.map(Self.decode)
        }
    }

    public func jobs(matching filter: JobFilter) async throws -> [Job] {
        try await translatingErrors {
            let rows = try await client.query(
                """
                SELECT \(unescaped: filter.summary ? PostgresSchema.summaryColumns : PostgresSchema.columns) FROM \(unescaped: table)
                WHERE (\(filter.status?.rawValue)::text IS NULL OR status = \(filter.status?.rawValue))
                  AND (\(filter.queue)::text IS NULL OR queue = \(filter.queue))
                ORDER BY created_at DESC, id DESC LIMIT \(max(0, filter.limit))
                """,
                logger: logger
            ).collect()
            return rows.jobsSkippingUnreadable(logger: logger, Self.decode)
        }
    }

    public func cancel(id: UUID) async throws -> Job {
        try await translatingErrors {
            let rows = try await client.query(
                """
                WITH changed AS (
                    UPDATE \(unescaped: table) SET status = 'cancelled', completed_at = now(), lease_expires_at = NULL
                    WHERE id = \(id) AND status IN ('pending', 'processing')
                    RETURNING \(unescaped: PostgresSchema.columns)
                )
                SELECT changed.*, pg_notify(\(schema.channel), 'cancel:' || changed.id::text) FROM changed
                """,
                logger: logger
            ).collect()
            return try await transitioned(rows, id: id, action: "cancel")
        }
    }

    public func retry(id: UUID) async throws -> Job {
        try await translatingErrors {
            let rows = try await client.query(
                """
                WITH changed AS (
                    UPDATE \(unescaped: table) SET status = 'pending', run_at = now(), completed_at = NULL, locked_by = NULL,
                        lease_expires_at = NULL, max_attempts = greatest(max_attempts, attempts + 1)
                    WHERE id = \(id) AND status IN ('failed', 'cancelled', 'completed')
                    RETURNING \(unescaped: PostgresSchema.columns)
                )
                SELECT changed.*, pg_notify(\(schema.channel), 'jobs') FROM changed
                """,
                logger: logger
            ).collect()
            return try await transitioned(rows, id: id, action: "retry")
        }
    }

    private func transitioned(_ rows: [PostgresRow], id: UUID, action: String) async throws -> Job {
        if let row = rows.first { return try Self.decode(row) }
        guard let current = try await job(id: id) else { throw JobStoreError.jobNotFound(id) }
        throw JobStoreError.invalidTransition(id: id, from: current.status, action: action)
    }

    public func stats(window: Duration?) async throws -> QueueStats {
        try await translatingErrors {
            let windowMilliseconds = window?.inMilliseconds ?? 0
            // One pass: a row per queue and a total row (GROUPING SETS), the window figures on the total.
            let rows = try await client.query(
                """
                SELECT
                    queue, grouping(queue) = 1 AS total,
                    count(*) FILTER (WHERE status = 'pending'),
                    count(*) FILTER (WHERE status = 'processing'),
                    count(*) FILTER (WHERE status = 'completed'),
                    count(*) FILTER (WHERE status = 'failed'),
                    count(*) FILTER (WHERE status = 'cancelled'),
                    extract(epoch FROM now() - min(run_at) FILTER (WHERE status = 'pending' AND run_at <= now()))::double precision,
                    count(*) FILTER (WHERE recent),
                    avg(seconds) FILTER (WHERE recent),
                    percentile_cont(0.95) WITHIN GROUP (ORDER BY seconds) FILTER (WHERE recent)
                FROM (
                    SELECT queue, status, run_at,
                        status = 'completed' AND completed_at >= now() - \(windowMilliseconds) * interval '1 millisecond'
                            AND started_at IS NOT NULL AND \(windowMilliseconds) > 0 AS recent,
                        extract(epoch FROM completed_at - started_at)::double precision AS seconds
                    FROM \(unescaped: table)
                ) AS jobs
                GROUP BY GROUPING SETS ((queue), ())
                """,
                logger: logger
            )
            var stats = QueueStats()
            for try await (queue, total, pending, processing, completed, failed, cancelled, oldest, recent, mean, p95) in rows.decode(
                (String?, Bool, Int, Int, Int, Int, Int, Double?, Int, Double?, Double?).self
            ) {
                let counts = QueueCounts(
                    pending: pending, processing: processing, completed: completed, failed: failed, cancelled: cancelled,
                    oldestPendingAgeSeconds: oldest.map { max(0, $0) }
                )
                if total {
                    stats.setTotals(counts)
                    if let window {
                        stats.window = window
                        stats.completedInWindow = recent
                        stats.meanDurationSeconds = mean
                        stats.p95DurationSeconds = p95
                    }
                } else if let queue {
                    stats.queues[queue] = counts
                }
            }
            if stats.window == nil, let window { stats.window = window }
            return stats
        }
    }

    public func deleteFinished(status: JobStatus, olderThan: Duration, limit: Int) async throws -> Int? {
        try await translatingErrors {
            try await client.withTransaction(logger: logger) { connection -> Int? in
                // One worker at a time: the others skip this round.
                let locked = try await connection.query(
                    "SELECT pg_try_advisory_xact_lock(hashtext(\("mobvibe-worker:retention:" + schema.table)))",
                    logger: logger
                ).collect().first?.decode(Bool.self) ?? false
                guard locked else { return nil }
                let rows = try await connection.query(
                    """
                    DELETE FROM \(unescaped: table) WHERE id IN (
                        SELECT id FROM \(unescaped: table)
                        WHERE status = \(status.rawValue) AND completed_at < now() - \(olderThan.inMilliseconds) * interval '1 millisecond'
                        LIMIT \(limit)
                    ) RETURNING id
                    """,
                    logger: logger
                ).collect()
                return rows.count
            }
        }
    }

    public func ping() async throws {
        try await translatingErrors {
            _ = try await client.query("SELECT 1", logger: logger).collect()
        }
    }

    // MARK: - Notifications

    public func watch(queues: [String], onEvent: @escaping @Sendable (StoreEvent) -> Void) async throws {
        try await translatingErrors {
            if url.isTransactionPooler {
                logger.warning(
                    "DATABASE_URL points at a transaction pooler (port 6543): LISTEN/NOTIFY is unavailable there, so the worker polls (POLL_INTERVAL_MS); use the session pooler (port 5432) or a direct connection for instant pickup"
                )
                return
            }
            try await client.withConnection { connection in
                try await connection.listen(on: schema.channel) { notifications in
                    logger.debug("Listening for job notifications", metadata: ["channel": .string(schema.channel)])
                    // Jobs may have arrived while we were not listening.
                    onEvent(.jobsAvailable)
                    for try await notification in notifications {
                        if notification.payload.hasPrefix("cancel:"), let id = UUID(uuidString: String(notification.payload.dropFirst(7))) {
                            onEvent(.jobCancelled(id))
                        } else {
                            onEvent(.jobsAvailable)
                        }
                    }
                }
            }
            throw PostgresJobStoreError.notificationsEnded
        }
    }

    private func notify(_ payload: String) async throws {
        _ = try await client.query("SELECT pg_notify(\(schema.channel), \(payload))", logger: logger).collect()
    }

    public func close() async throws {}

    public func settle() async throws {
        try await translatingErrors {
            _ = try await client.query(PostgresQuery(unsafeSQL: "VACUUM (ANALYZE) \(table)"), logger: logger).collect()
        }
        do {
            // Superusers and members of pg_checkpoint only.
            _ = try await client.query("CHECKPOINT", logger: logger).collect()
        } catch {
            logger.debug("Skipped CHECKPOINT", metadata: ["error": "\(String(reflecting: error))"])
        }
    }

    public func dropTable() async throws {
        try await translatingErrors {
            _ = try await client.query(PostgresQuery(unsafeSQL: "DROP TABLE IF EXISTS \(table) CASCADE"), logger: logger).collect()
            _ = try await client.query(
                PostgresQuery(unsafeSQL: "DROP FUNCTION IF EXISTS \"\(schema.schemaName)\".\"\(schema.tableName)_notify\"() CASCADE"),
                logger: logger
            ).collect()
            _ = try await client.query(
                "DELETE FROM \(unescaped: schema.migrationsTable) WHERE table_name = \(schema.tableName)",
                logger: logger
            ).collect()
        }
    }

    /// Runs a store operation, turning PostgresNIO's deliberately vague errors into messages
    /// an operator can act on (SQLSTATE and server message, or the connection problem).
    private func translatingErrors<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch {
            throw Self.translate(error)
        }
    }

    /// The error a store call reports for `error`: its own errors (also from inside a
    /// transaction) as they are, a refused value (SQLSTATE classes 22 and 54) as
    /// ``JobStoreError/valueRejected(_:)``, a missing privilege (42501) as
    /// ``JobStoreError/notPermitted(_:)``, anything else with its SQLSTATE and message.
    static func translate(_ error: any Error) -> any Error {
        if let error = error as? PostgresTransactionError, let inner = error.closureError {
            return translate(inner)
        }
        switch error {
        case is JobStoreError, is PostgresJobStoreError, is TimeoutError, is CancellationError:
            return error
        default:
            break
        }
        let message = describe(error)
        if let state = sqlState(of: error) {
            if state.hasPrefix("22") || state.hasPrefix("54") { return JobStoreError.valueRejected(message) }
            if state == "42501" {
                return JobStoreError.notPermitted(
                    "\(message): the database role in DATABASE_URL lacks a privilege the worker needs; it needs SELECT, INSERT, UPDATE and DELETE on the jobs table (and CREATE on its schema for migrations: run `worker migrate` once as the table's owner, and set AUTO_MIGRATE=false for a role without it)"
                )
            }
        }
        return PostgresJobStoreError.database(message)
    }

    /// `text` without NUL characters, which a PostgreSQL `text` value cannot hold.
    static func storableText(_ text: String) -> String {
        text.contains("\u{0}") ? text.replacingOccurrences(of: "\u{0}", with: "") : text
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? PostgresTransactionError {
            if let inner = error.closureError { return describe(inner) }
            if let inner = error.beginError { return describe(inner) }
            if let inner = error.commitError { return describe(inner) }
        }
        guard let error = error as? PSQLError else { return String(describing: error) }
        if let info = error.serverInfo {
            let state = info[.sqlState] ?? "?"
            let message = info[.message] ?? "error"
            let detail = info[.detail].map { " (\($0))" } ?? ""
            return "PostgreSQL error \(state): \(message)\(detail)"
        }
        if let underlying = error.underlying { return "\(error.code): \(underlying)" }
        return "\(error.code)"
    }

    // MARK: - Rows

    /// A row of the claim (``PostgresSchema/claimColumns``), read cell by cell in one pass, each
    /// cell with its concrete type (PostgresNIO's variadic `decode` resolved generic metadata at
    /// run time, a sizeable share of the claim's CPU).
    static func decodeClaimed(_ row: PostgresRow, workerID: String) throws -> ClaimedJob {
        var cells = row.makeIterator()
        var id: UUID?
        func next<T: PostgresDecodable>(_ type: T.Type) throws -> T {
            guard let cell = cells.next() else {
                throw JobStoreError.corruptRow(id: id?.uuidString.lowercased() ?? "unknown", reason: "the claim returned too few columns")
            }
            do {
                return try cell.decode(T.self)
            } catch {
                throw JobStoreError.corruptRow(id: id?.uuidString.lowercased() ?? "unknown", reason: "\(cell.columnName) cannot be read as \(T.self)")
            }
        }
        let jobID = try next(UUID.self)
        id = jobID
        let queue = try next(String.self), sessionID = try next(UUID?.self), prompt = try next(String.self)
        let payload = try next(String.self), priority = try next(Int.self), runAt = try next(Date.self)
        let attempts = try next(Int.self), maxAttempts = try next(Int.self), lastError = try next(String?.self)
        let createdAt = try next(Date.self), startedAt = try next(Date.self), leaseExpiresAt = try next(Date.self)
        let job = Job(
            id: jobID, queue: queue, sessionID: sessionID, prompt: prompt, payload: payload, status: .processing,
            priority: priority, runAt: runAt, attempts: attempts, maxAttempts: maxAttempts, lastError: lastError,
            createdAt: createdAt, startedAt: startedAt, lockedBy: workerID, leaseExpiresAt: leaseExpiresAt
        )
        return ClaimedJob(job: job, lease: Lease(jobID: jobID, workerID: workerID, attempt: attempts, expiresAt: leaseExpiresAt))
    }

    static func decode(_ row: PostgresRow) throws -> Job {
        let cells = PostgresRandomAccessRow(row)
        let id = try cells[0].decode(UUID.self)
        func field<T: PostgresDecodable>(_ index: Int, _ type: T.Type) throws -> T {
            do {
                return try cells[index].decode(T.self)
            } catch {
                throw JobStoreError.corruptRow(id: id.uuidString.lowercased(), reason: "\(cells[index].columnName) cannot be read as \(T.self)")
            }
        }
        let statusText = try field(5, String.self)
        guard let status = JobStatus(rawValue: statusText) else {
            throw JobStoreError.corruptRow(id: id.uuidString.lowercased(), reason: "unknown status \(statusText)")
        }
        return Job(
            id: id,
            queue: try field(1, String.self),
            sessionID: try field(2, UUID?.self),
            prompt: try field(3, String.self),
            payload: try field(4, String.self),
            status: status,
            priority: try field(6, Int.self),
            runAt: try field(7, Date.self),
            attempts: try field(8, Int.self),
            maxAttempts: try field(9, Int.self),
            lastError: try field(10, String?.self),
            result: try field(11, String?.self),
            createdAt: try field(12, Date.self),
            startedAt: try field(13, Date?.self),
            completedAt: try field(14, Date?.self),
            lockedBy: try field(15, String?.self),
            leaseExpiresAt: try field(16, Date?.self)
        )
    }
}

/// Errors of the PostgreSQL store.
public enum PostgresJobStoreError: Error, CustomStringConvertible {
    case invalidIdentifier(variable: String, value: String)
    case notificationsEnded
    /// The database refused or could not be reached; the text says why.
    case database(String)

    public var description: String {
        switch self {
        case .invalidIdentifier(let variable, let value):
            "invalid configuration: \(variable)=\(value) is not valid; expected letters, digits and _ (at most 63), not starting with a digit"
        case .notificationsEnded:
            "the notification connection closed"
        case .database(let message):
            message
        }
    }
}
