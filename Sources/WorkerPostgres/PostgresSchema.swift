import WorkerCore

/// The PostgreSQL schema of the jobs table, versioned in `worker_schema_migrations`.
///
/// Every statement is idempotent, and the whole migration runs in one transaction under an
/// advisory lock, so any number of workers can start at once. The table is created with only
/// `id` and `prompt`, then every other column is added if missing: a `coding_jobs` table from
/// the original plan (id, session_id, prompt, status, created_at) is upgraded in place.
struct PostgresSchema: Sendable {
    static let version = 11

    /// Schema-qualified, quoted table name, e.g. `"public"."coding_jobs"`.
    let table: String
    let schemaName: String
    let tableName: String
    /// The jobs' LISTEN/NOTIFY channel (inserts, cancels): `<table>_events`, lower case.
    let channel: String
    /// The enqueue, claim and outcome statements for this table, built once (they run on every
    /// batch).
    let enqueueStatement: StoreStatement.Text
    let claimStatement: StoreStatement.Text
    let claimAgainStatement: StoreStatement.Text
    let recordStatement: StoreStatement.Text
    let completeStatement: StoreStatement.Text
    /// The job events table (schema-qualified, quoted), its bare name, its NOTIFY channel, and
    /// the statements that append events (``makeAppendEventsStatement(table:eventsTable:channel:skippingStored:)``).
    let eventsTable: String
    let eventsTableName: String
    let eventsChannel: String
    let appendEventsStatement: StoreStatement.Text
    let appendEventsAgainStatement: StoreStatement.Text

    init(schema: String, table: String, sessionOnFailure: SessionFailurePolicy = .continue) {
        schemaName = schema
        tableName = table
        self.table = "\"\(schema)\".\"\(table)\""
        channel = "\(table)_events".lowercased()
        enqueueStatement = Self.makeEnqueueStatement(table: self.table)
        eventsTableName = JobEvent.tableName(forJobsTable: table)
        eventsTable = "\"\(schema)\".\"\(eventsTableName)\""
        eventsChannel = Self.eventsChannel(eventsTable: eventsTableName, jobsChannel: channel)
        claimStatement = Self.makeClaimStatement(table: self.table, eventsTable: eventsTable, skippingStored: false)
        claimAgainStatement = Self.makeClaimStatement(table: self.table, eventsTable: eventsTable, skippingStored: true)
        appendEventsStatement = Self.makeAppendEventsStatement(table: self.table, eventsTable: eventsTable, channel: eventsChannel, skippingStored: false)
        appendEventsAgainStatement = Self.makeAppendEventsStatement(table: self.table, eventsTable: eventsTable, channel: eventsChannel, skippingStored: true)
        recordStatement = Self.makeRecordStatement(table: self.table, eventsTable: eventsTable, channel: eventsChannel, failureBlocksSession: sessionOnFailure == .block)
        completeStatement = Self.makeCompleteStatement(table: self.table, eventsTable: eventsTable, channel: eventsChannel)
    }

    /// The events' NOTIFY channel: the events table's name, lower case, unless that is the jobs
    /// channel. A jobs table whose name does not end in "s" (`agent_work`, the benchmarks'
    /// `bench_1a2b3c4d`) has an events table named like its jobs channel (`agent_work_events`):
    /// every batch of events, and every outcome, then woke each idle worker of the table to claim
    /// (a wasted claim per notification, and every pickup measured on such a table waited behind
    /// one). The suffix makes it a name no jobs channel has (they all end in `_events`).
    static func eventsChannel(eventsTable: String, jobsChannel: String) -> String {
        let name = eventsTable.lowercased()
        return name == jobsChannel ? name + "_stream" : name
    }

    var migrationsTable: String { "\"\(schemaName)\".\"worker_schema_migrations\"" }
    /// One advisory lock for what all tables' migrations share: their schema and the migrations table.
    var lockKey: String { "mobvibe-worker:migrate" }
    /// The advisory lock of this table's migration: one migration of a table at a time.
    var tableLockKey: String { "mobvibe-worker:migrate:\(table)" }

    /// Statements of each version, one statement each.
    var migrations: [Int: [String]] {
        [
            1: [
                "CREATE SCHEMA IF NOT EXISTS \"\(schemaName)\"",
                "CREATE TABLE IF NOT EXISTS \(table) (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), prompt text NOT NULL)",
                "ALTER TABLE \(table) ALTER COLUMN id SET DEFAULT gen_random_uuid()",
                "ALTER TABLE \(table) ADD COLUMN IF NOT EXISTS queue text NOT NULL DEFAULT 'default'",
                "ALTER TABLE \(table) ADD COLUMN IF NOT EXISTS session_id uuid",
                // The plan's table has `session_id uuid NOT NULL`: kept, every job without a
                // session (a backend's, a hand-written `INSERT (prompt)`) was refused.
                "ALTER TABLE \(table) ALTER COLUMN session_id DROP NOT NULL",
                "ALTER TABLE \(table) ADD COLUMN IF NOT EXISTS payload jsonb NOT NULL DEFAULT '{}'::jsonb",
                "ALTER TABLE \(table) ADD COLUMN IF NOT EXISTS status text NOT NULL DEFAULT 'pending'",
                "ALTER TABLE \(table) ALTER COLUMN status SET DEFAULT 'pending'",
                "ALTER TABLE \(table) ADD COLUMN IF NOT EXISTS priority integer NOT NULL DEFAULT 0",
                "ALTER TABLE \(table) ADD COLUMN IF NOT EXISTS run_at timestamptz NOT NULL DEFAULT now()",
                "ALTER TABLE \(table) ADD COLUMN IF NOT EXISTS attempts integer NOT NULL DEFAULT 0",
                "ALTER TABLE \(table) ADD COLUMN IF NOT EXISTS max_attempts integer NOT NULL DEFAULT 3",
                "ALTER TABLE \(table) ADD COLUMN IF NOT EXISTS last_error text",
                "ALTER TABLE \(table) ADD COLUMN IF NOT EXISTS result jsonb",
                "ALTER TABLE \(table) ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now()",
                "ALTER TABLE \(table) ALTER COLUMN created_at SET DEFAULT now()",
                "ALTER TABLE \(table) ADD COLUMN IF NOT EXISTS started_at timestamptz",
                "ALTER TABLE \(table) ADD COLUMN IF NOT EXISTS completed_at timestamptz",
                "ALTER TABLE \(table) ADD COLUMN IF NOT EXISTS locked_by text",
                "ALTER TABLE \(table) ADD COLUMN IF NOT EXISTS lease_expires_at timestamptz",
                // A legacy row whose created_at is NULL would otherwise never be claimable in order.
                "UPDATE \(table) SET created_at = now() WHERE created_at IS NULL",
                """
                CREATE INDEX IF NOT EXISTS "\(tableName)_claim_idx" ON \(table) (queue, priority DESC, run_at, id)
                    WHERE status = 'pending'
                """,
                """
                CREATE INDEX IF NOT EXISTS "\(tableName)_lease_idx" ON \(table) (lease_expires_at)
                    WHERE status = 'processing'
                """,
                """
                CREATE INDEX IF NOT EXISTS "\(tableName)_finished_idx" ON \(table) (status, completed_at)
                    WHERE status IN ('completed', 'failed', 'cancelled')
                """,
                """
                CREATE OR REPLACE FUNCTION "\(schemaName)"."\(tableName)_notify"() RETURNS trigger
                LANGUAGE plpgsql AS $$
                BEGIN
                    PERFORM pg_notify('\(channel)', 'jobs');
                    RETURN NULL;
                END
                $$
                """,
                "DROP TRIGGER IF EXISTS \"\(tableName)_notify\" ON \(table)",
                """
                CREATE TRIGGER "\(tableName)_notify" AFTER INSERT ON \(table)
                    FOR EACH STATEMENT EXECUTE FUNCTION "\(schemaName)"."\(tableName)_notify"()
                """,
            ],
            // The checks the SQLite table has had from the start, so that a producer writing
            // 'Pending' or a queue name no worker can serve gets PostgreSQL's own error at insert,
            // instead of a row that never runs and is missing from every count. Added NOT VALID
            // (new and updated rows only, no table scan under lock), then validated where the
            // existing rows allow it; a legacy table whose rows do not is still migrated, and the
            // worker logs which check waits for them (``PostgresJobStore/migrate()``).
            2: Self.checks.flatMap { name, condition in
                [
                    """
                    DO $$ BEGIN
                        IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = '\(table)'::regclass AND conname = '\(tableName)_\(name)_check') THEN
                            ALTER TABLE \(table) ADD CONSTRAINT "\(tableName)_\(name)_check" CHECK (\(condition)) NOT VALID;
                        END IF;
                    END $$
                    """,
                    """
                    DO $$ BEGIN
                        ALTER TABLE \(table) VALIDATE CONSTRAINT "\(tableName)_\(name)_check";
                    EXCEPTION WHEN check_violation THEN NULL;
                    END $$
                    """,
                ]
            },
            3: sessionMigration,
            4: timeOrderedIDMigration,
            5: eventsMigration,
            // Version 6: what the worker measured of a job's attempts (JobUsage): CPU time and
            // run time summed, the largest peak memory.
            6: [
                "ALTER TABLE \(table) ADD COLUMN IF NOT EXISTS cpu_seconds double precision NOT NULL DEFAULT 0",
                "ALTER TABLE \(table) ADD COLUMN IF NOT EXISTS peak_memory_bytes bigint NOT NULL DEFAULT 0",
                "ALTER TABLE \(table) ADD COLUMN IF NOT EXISTS run_seconds double precision NOT NULL DEFAULT 0",
            ],
            // Version 7: the user a job is for (a Supabase user's id; NULL for a system job), read
            // by row-level security (`worker migrate --supabase`) and by `jobs list --user`.
            7: [
                "ALTER TABLE \(table) ADD COLUMN IF NOT EXISTS user_id uuid",
                """
                CREATE INDEX IF NOT EXISTS "\(tableName)_user_idx" ON \(table) (user_id, created_at DESC)
                    WHERE user_id IS NOT NULL
                """,
            ],
            8: valueDomainMigration,
            9: sessionRepairMigration,
            10: eventUserMigration,
            11: sessionAdmitLockMigration,
        ]
    }

    /// Version 4: rows inserted without an id (by a backend, psql, Supabase) get a time-ordered
    /// one, as the worker's own enqueue gives them (``UUID/timeOrdered(count:now:)``).
    ///
    /// `gen_random_uuid()` ids are random: the rows of one insert, which share `created_at` and
    /// `run_at`, were claimed in random order (the claim breaks ties by id), a session's turns
    /// inserted in one statement could start in any order, and every claim and outcome write
    /// reached rows and primary-key pages all over the table (`worker run` on 50,000 jobs
    /// inserted by hand moved about 13% fewer jobs a second than with time-ordered ids). The id is
    /// a UUIDv7 as PostgreSQL 18's `uuidv7()` makes it: 48 bits of Unix milliseconds, the
    /// version, 12 bits of the microseconds within the millisecond (so ids of one statement
    /// rise with the clock), then the random bits (and variant) of `gen_random_uuid()`.
    var timeOrderedIDMigration: [String] {
        [
            """
            CREATE OR REPLACE FUNCTION "\(schemaName)"."\(tableName)_new_id"() RETURNS uuid
            LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
                SELECT encode(overlay(uuid_send(gen_random_uuid())
                    placing int8send((now.us / 1000) << 16 | 28672 | ((now.us % 1000) * 4096 / 1000)) from 1 for 8), 'hex')::uuid
                FROM (SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS us) AS now
            $$
            """,
            "ALTER TABLE \(table) ALTER COLUMN id SET DEFAULT \"\(schemaName)\".\"\(tableName)_new_id\"()",
        ]
    }

    /// Version 5: live job events (docs/WORKER_SERVICE.md, "Job events"), numbered per job,
    /// deleted with their job (a statement trigger).
    var eventsMigration: [String] {
        [
            // What agents report spending, summed over a job's attempts (JobUsage).
            "ALTER TABLE \(table) ADD COLUMN IF NOT EXISTS input_tokens bigint NOT NULL DEFAULT 0",
            "ALTER TABLE \(table) ADD COLUMN IF NOT EXISTS output_tokens bigint NOT NULL DEFAULT 0",
            "ALTER TABLE \(table) ADD COLUMN IF NOT EXISTS cost_usd double precision NOT NULL DEFAULT 0",
            """
            CREATE TABLE IF NOT EXISTS \(eventsTable) (
                job_id uuid NOT NULL,
                seq bigint NOT NULL,
                attempt integer NOT NULL,
                created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
                kind text NOT NULL,
                data jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(data) = 'object'),
                PRIMARY KEY (job_id, seq)
            )
            """,
            // Deleted with their job. A statement trigger, not a foreign key: the key's check
            // ran a query per inserted event (a third of an event's cost), and the insert already
            // share-locks each event's job row, in which its lease is checked.
            """
            CREATE OR REPLACE FUNCTION "\(schemaName)"."\(tableName)_delete_events"() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                DELETE FROM \(eventsTable) AS e USING deleted_jobs AS d WHERE e.job_id = d.id;
                RETURN NULL;
            END
            $$
            """,
            "DROP TRIGGER IF EXISTS \"\(tableName)_delete_events\" ON \(table)",
            """
            CREATE TRIGGER "\(tableName)_delete_events" AFTER DELETE ON \(table)
                REFERENCING OLD TABLE AS deleted_jobs
                FOR EACH STATEMENT EXECUTE FUNCTION "\(schemaName)"."\(tableName)_delete_events"()
            """,
            // The roles that may use the jobs table may use its events the same way: a worker
            // role granted only the jobs table before this version (least privilege) would
            // otherwise fail every claim after the upgrade (the claim reads the last event).
            """
            DO $$ DECLARE grant_row record; BEGIN
                FOR grant_row IN
                    SELECT a.privilege_type, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END AS grantee
                    FROM pg_class AS c CROSS JOIN LATERAL aclexplode(c.relacl) AS a LEFT JOIN pg_roles AS r ON r.oid = a.grantee
                    WHERE c.oid = '\(table)'::regclass AND a.grantee <> c.relowner
                      AND a.privilege_type IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE')
                LOOP
                    EXECUTE format('GRANT %s ON \(eventsTable.replacingOccurrences(of: "'", with: "''")) TO %s', grant_row.privilege_type, grant_row.grantee);
                END LOOP;
            END $$
            """,
        ]
    }

    /// Cancelling a job (`worker jobs cancel`, the job API, `cancel_coding_job`): what is set, and
    /// which jobs may be cancelled. A running job keeps its lease until the worker has stopped its
    /// command (``PostgresJobStore/releaseCancelled(_:)``), so that neither a retry of it nor the
    /// session's next turn can start beside it; a failed turn that holds its session
    /// (SESSION_ON_FAILURE=block) may be cancelled to let the session go on.
    static let cancelAssignments = """
        status = 'cancelled', completed_at = now(), blocks_session = false, \
        lease_expires_at = CASE WHEN status = 'processing' THEN lease_expires_at END
        """
    static let cancellable = "(status IN ('pending', 'processing') OR (status = 'failed' AND blocks_session))"
    /// Retrying a job (`worker jobs retry`, `retry_coding_job`): pending again, now, with an
    /// attempt left.
    static let retryAssignments = """
        status = 'pending', run_at = now(), completed_at = NULL, locked_by = NULL, lease_expires_at = NULL, \
        max_attempts = greatest(max_attempts, attempts + 1)
        """

    /// The table's checks (name, condition), matching ``NewJob/validate()`` and the SQLite table.
    static let checks: [(String, String)] = [
        ("status", "status IN ('pending', 'processing', 'completed', 'failed', 'cancelled')"),
        ("max_attempts", "max_attempts >= 1"),
        ("payload", "jsonb_typeof(payload) = 'object'"),
        ("priority", "priority BETWEEN \(NewJob.priorityRange.lowerBound) AND \(NewJob.priorityRange.upperBound)"),
        ("queue", "queue ~ '\(NewJob.queueNamePattern)'"),
    ]

    /// The columns the job queries return (show, list, cancel, retry), in the order
    /// ``PostgresJobStore`` decodes them; the claim returns ``claimColumns``.
    static let columns = """
        id, queue, session_id, prompt, payload::text, status, priority, run_at, attempts, max_attempts, \
        last_error, result::text, created_at, started_at, completed_at, locked_by, lease_expires_at, \
        held_by_session, blocks_session, input_tokens, output_tokens, cost_usd, cpu_seconds, peak_memory_bytes, run_seconds, user_id
        """

    /// ``columns`` for a summary listing (``JobFilter/summary``): the same columns in the same
    /// order, without the big values.
    static let summaryColumns = """
        id, queue, session_id, left(prompt, \(JobFilter.summaryPromptLength)), '{}'::text, status, priority, run_at, attempts, \
        max_attempts, NULL::text, NULL::text, created_at, started_at, completed_at, locked_by, lease_expires_at, \
        held_by_session, blocks_session, input_tokens, output_tokens, cost_usd, cpu_seconds, peak_memory_bytes, run_seconds, user_id
        """

    /// What a claim returns, in the order ``PostgresJobStore`` decodes them: only the columns
    /// whose values the claim does not already know (status, `locked_by`, and the finished-job
    /// fields are fixed for a job just claimed), so each claimed row is cheap to send and read.
    static let claimColumns = """
        j.id, j.queue, j.session_id, j.prompt, j.payload::text, j.priority, j.run_at, j.attempts, j.max_attempts, \
        j.last_error, j.created_at, j.started_at, j.lease_expires_at
        """
}
