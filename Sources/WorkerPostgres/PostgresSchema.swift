import WorkerCore

/// The PostgreSQL schema of the jobs table, versioned in `worker_schema_migrations`.
///
/// Every statement is idempotent, and the whole migration runs in one transaction under an
/// advisory lock, so any number of workers can start at once. The table is created with only
/// `id` and `prompt`, then every other column is added if missing: a `coding_jobs` table from
/// the original plan (id, session_id, prompt, status, created_at) is upgraded in place.
struct PostgresSchema: Sendable {
    static let version = 8

    /// Schema-qualified, quoted table name, e.g. `"public"."coding_jobs"`.
    let table: String
    let schemaName: String
    let tableName: String
    /// The LISTEN/NOTIFY channel: lower-case table name.
    let channel: String
    /// The enqueue, claim and outcome statements for this table, built once (they run on every
    /// batch).
    let enqueueStatement: StoreStatement.Text
    let claimStatement: StoreStatement.Text
    let recordStatement: StoreStatement.Text
    let completeStatement: StoreStatement.Text
    /// The job events table (schema-qualified, quoted), its bare name, its NOTIFY channel, and
    /// the statements that append events (``appendEventsStatement(table:eventsTable:channel:skippingStored:)``).
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
        enqueueStatement = Self.enqueueStatement(table: self.table)
        eventsTableName = JobEvent.tableName(forJobsTable: table)
        eventsTable = "\"\(schema)\".\"\(eventsTableName)\""
        eventsChannel = Self.eventsChannel(eventsTable: eventsTableName, jobsChannel: channel)
        claimStatement = Self.claimStatement(table: self.table, eventsTable: eventsTable)
        appendEventsStatement = Self.appendEventsStatement(table: self.table, eventsTable: eventsTable, channel: eventsChannel, skippingStored: false)
        appendEventsAgainStatement = Self.appendEventsStatement(table: self.table, eventsTable: eventsTable, channel: eventsChannel, skippingStored: true)
        recordStatement = Self.recordStatement(table: self.table, eventsTable: eventsTable, channel: eventsChannel, failureBlocksSession: sessionOnFailure == .block)
        completeStatement = Self.completeStatement(table: self.table, eventsTable: eventsTable, channel: eventsChannel)
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
    /// which jobs may be cancelled. A running turn of a session keeps its lease until the worker
    /// has stopped its command, so the session's next turn cannot start beside it; a failed turn
    /// that holds its session (SESSION_ON_FAILURE=block) may be cancelled to let the session go on.
    static let cancelAssignments = """
        status = 'cancelled', completed_at = now(), blocks_session = false, \
        lease_expires_at = CASE WHEN status = 'processing' AND session_id IS NOT NULL THEN lease_expires_at END
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

    /// Inserts jobs, one element of each array per job: `$1` ids, `$2` queues, `$3` session ids
    /// ('' for none), `$4` prompts, `$5` payloads (JSON text), `$6` priorities, `$7` run-at times
    /// in Unix seconds (negative: now, by the database's clock), `$8` max attempts, `$9` user ids
    /// ('' for none).
    private static func enqueueStatement(table: String) -> StoreStatement.Text {
        StoreStatement.Text(
            name: "mobvibe_enqueue",
            sql: """
                -- Before any row goes in, the active turns of the batch's sessions are locked in id
                -- order, the order in which outcome writes and renewals lock rows. Each insert's
                -- session trigger locks its session's active turn until the statement commits;
                -- taken one by one in session order, those locks crossed a worker's outcome batch
                -- (id order) and both waited (a deadlock, or a convoy past the statement bound).
                WITH active AS (
                    SELECT j.id FROM \(table) AS j
                    WHERE j.session_id = ANY(ARRAY(SELECT DISTINCT s::uuid FROM unnest($3::text[]) AS s WHERE s <> ''))
                      AND \(activeTurn("j"))
                    ORDER BY j.id
                    FOR UPDATE
                )
                INSERT INTO \(table) (id, queue, session_id, prompt, payload, priority, run_at, max_attempts, status, user_id)
                SELECT id, queue, NULLIF(session_id, '')::uuid, prompt, payload::jsonb, priority::integer,
                    CASE WHEN run_at < 0 THEN now() ELSE to_timestamp(run_at) END, max_attempts::integer, 'pending',
                    NULLIF(user_id, '')::uuid
                FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::float8[], $8::bigint[], $9::text[])
                    AS t(id, queue, session_id, prompt, payload, priority, run_at, max_attempts, user_id)
                WHERE (SELECT count(*) FROM active) >= 0
                """
        )
    }

    /// The claim: `$1` queues, `$2` how many, `$3` the worker's id, `$4` the lease in milliseconds.
    private static func claimStatement(table: String, eventsTable: String) -> StoreStatement.Text {
        StoreStatement.Text(
            name: "mobvibe_claim",
            sql: """
                WITH claimed AS (
                UPDATE \(table) AS j
                SET status = 'processing', attempts = j.attempts + 1, locked_by = $3::text, started_at = now(),
                    lease_expires_at = now() + $4::bigint * interval '1 millisecond'
                -- Rows are picked (and locked) first, then updated by id: whatever the row estimates,
                -- the update reaches them through the primary key. (A join form planned for an
                -- unknown LIMIT, as a cached generic plan is, scanned the whole table.)
                WHERE j.id = ANY(ARRAY(
                    -- Per queue, the claim index delivers rows in order, so a claim reads only the
                    -- rows it may take (a plain queue = ANY(...) would read every pending row and sort).
                    SELECT candidate.id FROM unnest($1::text[]) AS served(queue)
                    CROSS JOIN LATERAL (
                        SELECT id, priority, run_at FROM \(table)
                        WHERE status = 'pending' AND NOT held_by_session AND run_at <= now() AND queue = served.queue
                        ORDER BY priority DESC, run_at, id
                        LIMIT $2::bigint
                        FOR UPDATE SKIP LOCKED
                    ) AS candidate
                    ORDER BY candidate.priority DESC, candidate.run_at, candidate.id
                    LIMIT $2::bigint
                ))
                -- The job's last event, for this attempt's to number on from (one probe of the
                -- events' primary key).
                RETURNING \(Self.claimColumns), (SELECT coalesce(max(e.seq), 0) FROM \(eventsTable) AS e WHERE e.job_id = j.id) AS last_seq
                ), noted AS (
                    -- Each job's `claimed` event, in the claim's own statement (no round trip, no
                    -- lock of its own: the claim holds the rows).
                    INSERT INTO \(eventsTable) (job_id, seq, attempt, kind, data)
                    SELECT c.id, c.last_seq + 1, c.attempts, 'status',
                        jsonb_build_object('status', 'claimed', 'workerId', $3::text, 'attempt', c.attempts)
                    FROM claimed AS c
                    ON CONFLICT (job_id, seq) DO NOTHING
                )
                SELECT * FROM claimed
                """
        )
    }

    /// Events of running jobs. The batch's distinct leases: `$1` job ids, `$2` worker ids, `$3`
    /// attempts, `$8` the sequence number each lease's first event in the batch follows; then
    /// one element of each array an event: `$4` its lease (a 1-based index into the lease
    /// arrays), `$5` sequence numbers, `$6` kinds, `$7` data (JSON object text).
    /// Returns the indexes of the leases that hold, negated for those whose job's last stored
    /// event is before the one their events follow (an earlier write answered but never
    /// committed: storing these would leave a gap for good, so they are not), then 0. Only the
    /// positive ones' events are stored. An event is matched by lease, not by job: an earlier
    /// attempt's late events may share a batch with the current attempt's, when this worker
    /// claimed the job again.
    ///
    /// Two forms: `skippingStored` adds `ON CONFLICT DO NOTHING`, for a write repeated after its
    /// answer was lost. The plain form is the one used (the conflict check took a quarter of the
    /// statement's time); it fails with a unique violation on such a repeat, and the write is
    /// then made again in the other form.
    static func appendEventsStatement(table: String, eventsTable: String, channel: String, skippingStored: Bool) -> StoreStatement.Text {
        StoreStatement.Text(
            name: skippingStored ? "mobvibe_append_events_again" : "mobvibe_append_events",
            sql: """
                WITH held AS (
                    -- The leases that hold, their jobs share-locked (in id order, as outcome writes
                    -- lock them) until the events are in: a rescue or a new claim of the job
                    -- waits, so the next attempt numbers its events after these (its claim reads
                    -- the last).
                    -- `follows`: the job's last stored event (one probe of the events' primary
                    -- key) is at least the one these events follow. Events are written in order,
                    -- each batch only after the one before it, so this holds exactly when every
                    -- earlier event is stored.
                    SELECT l.n::int AS n, j.id,
                        (SELECT coalesce(max(e.seq), 0) FROM \(eventsTable) AS e WHERE e.job_id = j.id) >= l.previous AS follows
                    FROM \(table) AS j
                    JOIN unnest($1::uuid[], $2::text[], $3::bigint[], $8::bigint[]) WITH ORDINALITY AS l(job_id, worker, attempt, previous, n)
                        ON j.id = l.job_id AND j.locked_by = l.worker AND j.attempts = l.attempt
                    WHERE j.status IN ('processing', 'cancelled')
                    ORDER BY j.id
                    FOR SHARE OF j
                ), inserted AS (
                    -- (Not referenced: a data-modifying CTE runs to completion all the same.)
                    INSERT INTO \(eventsTable) (job_id, seq, attempt, kind, data)
                    SELECT ($1::uuid[])[v.lease], v.seq, ($3::bigint[])[v.lease], v.kind, v.data::jsonb
                    FROM unnest($4::int4[], $5::bigint[], $6::text[], $7::text[]) AS v(lease, seq, kind, data)
                    WHERE v.lease = ANY(ARRAY(SELECT n FROM held WHERE follows))\(skippingStored ? "\n                    ON CONFLICT (job_id, seq) DO NOTHING" : "")
                ), notified AS (
                    -- Readers following these jobs: their ids, 100 to a notification (a payload
                    -- holds at most 8,000 bytes).
                    SELECT pg_notify('\(channel)', string_agg(c.id::text, ',')) FROM (
                        SELECT d.id, (row_number() OVER (ORDER BY d.id) - 1) / 100 AS chunk
                        FROM (SELECT DISTINCT id FROM held WHERE follows) AS d
                    ) AS c GROUP BY c.chunk
                )
                -- Then a last row of 0: an answer without it was cut short (a connection lost as
                -- the server stopped), and the write is made again rather than taken as refused.
                SELECT CASE WHEN follows THEN n ELSE -n END FROM held WHERE (SELECT count(*) FROM notified) >= 0
                UNION ALL SELECT 0
                """
        )
    }

    /// Outcomes of many jobs, each row applied only while its lease holds: `$1` ids, `$2` worker
    /// ids, `$3` attempts, `$4` kinds (completed, retry, failed, released), `$5` results,
    /// `$6` errors, `$7` retry delays in milliseconds, `$8` the status `processing`, `$9` and
    /// `$10` the sequence numbers (0: none) and data of the attempts' ending events, `$11`-`$16`
    /// the attempts' input tokens, output tokens, cost, CPU seconds, peak memory and run seconds
    /// (added to the job's; the peak the larger), `$17` the events the ending events follow. Returns the
    /// ids it applied. A turn that fails for good holds its session when `failureBlocksSession`
    /// (``SessionFailurePolicy/block``).
    private static func recordStatement(table: String, eventsTable: String, channel: String, failureBlocksSession: Bool) -> StoreStatement.Text {
        StoreStatement.Text(
            name: "mobvibe_record",
            sql: """
                WITH done AS (
                UPDATE \(table) AS j SET
                    status = CASE v.kind WHEN 'completed' THEN 'completed' WHEN 'failed' THEN 'failed' ELSE 'pending' END,
                    result = CASE WHEN v.kind = 'completed' THEN v.result::jsonb ELSE j.result END,
                    last_error = CASE WHEN v.kind IN ('retry', 'failed') THEN v.error ELSE j.last_error END,
                    run_at = CASE WHEN v.kind = 'retry' THEN now() + v.delay_ms * interval '1 millisecond' ELSE j.run_at END,
                    attempts = CASE WHEN v.kind = 'released' THEN j.attempts - 1 ELSE j.attempts END,
                    completed_at = CASE WHEN v.kind IN ('completed', 'failed') THEN now() ELSE NULL END,
                    blocks_session = (v.kind = 'failed' AND j.session_id IS NOT NULL AND \(failureBlocksSession)),
                    input_tokens = j.input_tokens + v.input_tokens, output_tokens = j.output_tokens + v.output_tokens,
                    cost_usd = j.cost_usd + v.cost_usd, cpu_seconds = j.cpu_seconds + v.cpu_seconds,
                    peak_memory_bytes = greatest(j.peak_memory_bytes, v.peak_memory_bytes), run_seconds = j.run_seconds + v.run_seconds,
                    locked_by = NULL, lease_expires_at = NULL
                FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::bigint[], $9::bigint[], $10::text[],
                            $11::bigint[], $12::bigint[], $13::float8[], $14::float8[], $15::bigint[], $16::float8[], $17::bigint[])
                    AS v(id, worker, attempt, kind, result, error, delay_ms, event_seq, event_data, input_tokens, output_tokens, cost_usd,
                         cpu_seconds, peak_memory_bytes, run_seconds, follows)
                -- $8 is 'processing', passed as a value: as a literal it would let a cached generic
                -- plan (made for an unknown number of outcomes) walk the partial lease index, with
                -- its dead entries, instead of looking each job up by id.
                WHERE j.id = v.id AND j.status = $8::text AND j.locked_by = v.worker AND j.attempts = v.attempt
                    AND \(Self.endingEventFollows(eventsTable: eventsTable))
                RETURNING j.id, v.attempt, v.event_seq, v.event_data
                )\(endingEvents(eventsTable: eventsTable, channel: channel))
                """
        )
    }

    /// The common batch, completions only, all by one worker: `$1` ids, `$2` attempts, `$3`
    /// results, `$4` the worker's id, `$5` the status `processing`, `$6` and `$7` the ending
    /// events' sequence numbers (0: none) and data, `$8`-`$13` the attempts' usage, `$14` the
    /// events the ending events follow. Does what ``recordStatement`` does for
    /// completions, with fewer arrays and no per-row choices. Returns the ids it applied.
    private static func completeStatement(table: String, eventsTable: String, channel: String) -> StoreStatement.Text {
        StoreStatement.Text(
            name: "mobvibe_complete",
            sql: """
                WITH done AS (
                UPDATE \(table) AS j SET
                    status = 'completed', result = v.result::jsonb, completed_at = now(),
                    input_tokens = j.input_tokens + v.input_tokens, output_tokens = j.output_tokens + v.output_tokens,
                    cost_usd = j.cost_usd + v.cost_usd, cpu_seconds = j.cpu_seconds + v.cpu_seconds,
                    peak_memory_bytes = greatest(j.peak_memory_bytes, v.peak_memory_bytes), run_seconds = j.run_seconds + v.run_seconds,
                    locked_by = NULL, lease_expires_at = NULL
                FROM unnest($1::uuid[], $2::bigint[], $3::text[], $6::bigint[], $7::text[], $8::bigint[], $9::bigint[], $10::float8[],
                            $11::float8[], $12::bigint[], $13::float8[], $14::bigint[])
                    AS v(id, attempt, result, event_seq, event_data, input_tokens, output_tokens, cost_usd, cpu_seconds, peak_memory_bytes, run_seconds,
                         follows)
                WHERE j.id = v.id AND j.status = $5::text AND j.locked_by = $4::text AND j.attempts = v.attempt
                    AND \(Self.endingEventFollows(eventsTable: eventsTable))
                RETURNING j.id, v.attempt, v.event_seq, v.event_data
                )\(endingEvents(eventsTable: eventsTable, channel: channel))
                """
        )
    }

    /// The condition of an outcome statement (`v` the outcome, `j` the job) that its ending event
    /// follows the job's last stored event (`v.follows`, 0: nothing to check, see
    /// ``JobCompletion/FinalEvent/follows``): as for a batch of events (``appendEventsStatement``),
    /// an outcome after events that were answered but never committed is not applied, so that
    /// no job ends with a gap in its events. (The job stays with its lease, no longer renewed,
    /// and the rescue gives it its next attempt.)
    private static func endingEventFollows(eventsTable: String) -> String {
        "(v.follows = 0 OR (SELECT coalesce(max(e.seq), 0) FROM \(eventsTable) AS e WHERE e.job_id = j.id) >= v.follows)"
    }

    /// The end of an outcome statement whose `done` CTE returns the applied rows with their
    /// ending events: the events stored, their jobs' readers notified (100 ids a notification),
    /// the applied ids returned.
    private static func endingEvents(eventsTable: String, channel: String) -> String {
        """
        , noted AS (
            INSERT INTO \(eventsTable) (job_id, seq, attempt, kind, data)
            SELECT d.id, d.event_seq, d.attempt, 'status', d.event_data::jsonb FROM done AS d WHERE d.event_seq > 0
            ON CONFLICT (job_id, seq) DO NOTHING
            RETURNING job_id
        ), notified AS (
            SELECT pg_notify('\(channel)', string_agg(c.job_id::text, ',')) FROM (
                SELECT n.job_id, (row_number() OVER () - 1) / 100 AS chunk FROM noted AS n
            ) AS c GROUP BY c.chunk
        )
        SELECT d.id FROM done AS d WHERE (SELECT count(*) FROM notified) >= 0
        """
    }
}
