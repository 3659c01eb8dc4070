import WorkerCore

/// The PostgreSQL schema of the jobs table, versioned in `worker_schema_migrations`.
///
/// Every statement is idempotent, and the whole migration runs in one transaction under an
/// advisory lock, so any number of workers can start at once. The table is created with only
/// `id` and `prompt`, then every other column is added if missing: a `coding_jobs` table from
/// the original plan (id, session_id, prompt, status, created_at) is upgraded in place.
struct PostgresSchema: Sendable {
    static let version = 3

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

    init(schema: String, table: String, sessionOnFailure: SessionFailurePolicy = .continue) {
        schemaName = schema
        tableName = table
        self.table = "\"\(schema)\".\"\(table)\""
        channel = "\(table)_events".lowercased()
        enqueueStatement = Self.enqueueStatement(table: self.table)
        claimStatement = Self.claimStatement(table: self.table)
        recordStatement = Self.recordStatement(table: self.table, failureBlocksSession: sessionOnFailure == .block)
        completeStatement = Self.completeStatement(table: self.table)
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
            // Coding sessions (docs/WORKER_SERVICE.md, "Sessions"): one turn of a session at a time,
            // in order. The database keeps the rule itself, for any writer (this worker, a backend,
            // psql), with triggers that hold every pending turn back (`held_by_session`) and let one
            // through when its session has no active turn; a unique index makes two active turns of
            // one session impossible whatever happens.
            3: [
                "ALTER TABLE \(table) ADD COLUMN IF NOT EXISTS held_by_session boolean NOT NULL DEFAULT false",
                "ALTER TABLE \(table) ADD COLUMN IF NOT EXISTS blocks_session boolean NOT NULL DEFAULT false",
                // On a session's active turn: whether turns wait behind it. A turn that finishes
                // with none waiting needs nothing done for its session, and most sessions (a
                // phone's user waits for the answer before the next prompt) are like that.
                "ALTER TABLE \(table) ADD COLUMN IF NOT EXISTS session_has_waiting boolean NOT NULL DEFAULT false",
                // Existing turns: every pending one held, then the oldest of each session that
                // runs nothing let through.
                "UPDATE \(table) SET held_by_session = true WHERE session_id IS NOT NULL AND status = 'pending'",
                """
                UPDATE \(table) AS j SET held_by_session = false
                FROM (SELECT DISTINCT ON (session_id) id, session_id FROM \(table)
                      WHERE session_id IS NOT NULL AND status = 'pending' ORDER BY session_id, created_at, id) AS first
                WHERE j.id = first.id
                  AND NOT EXISTS (SELECT 1 FROM \(table) AS r WHERE r.session_id = first.session_id AND r.status = 'processing')
                """,
                """
                UPDATE \(table) AS j SET session_has_waiting = true
                WHERE j.session_id IS NOT NULL AND \(Self.activeTurn("j"))
                  AND EXISTS (SELECT 1 FROM \(table) AS w WHERE w.session_id = j.session_id AND w.status = 'pending' AND w.held_by_session)
                """,
                // Jobs of the previous schema's workers may run two turns of one session at once
                // (nothing stopped them): the index is then made without UNIQUE, and the triggers
                // still let no new turn through while one is active.
                """
                DO $$ BEGIN
                    CREATE UNIQUE INDEX IF NOT EXISTS "\(tableName)_session_turn_idx" ON \(table) (session_id)
                        WHERE session_id IS NOT NULL AND \(Self.activeTurn(nil))
                ;
                EXCEPTION WHEN unique_violation THEN
                    CREATE INDEX IF NOT EXISTS "\(tableName)_session_turn_idx" ON \(table) (session_id)
                        WHERE session_id IS NOT NULL AND \(Self.activeTurn(nil));
                END $$
                """,
                """
                CREATE INDEX IF NOT EXISTS "\(tableName)_session_wait_idx" ON \(table) (session_id, created_at, id)
                    WHERE status = 'pending' AND held_by_session
                """,
                // The claim index, now without the turns that wait for their session: a claim
                // never reads them, however many wait.
                "DROP INDEX IF EXISTS \"\(schemaName)\".\"\(tableName)_claim_idx\"",
                """
                CREATE INDEX IF NOT EXISTS "\(tableName)_claim_idx" ON \(table) (queue, priority DESC, run_at, id)
                    WHERE status = 'pending' AND NOT held_by_session
                """,
                // Lets waiting turns through, when their sessions have no active turn. Called by
                // whoever changed a session's turns (the triggers below), in one of two ways
                // (docs/WORKER_SERVICE.md, "Sessions", says why together they are race-free):
                // - release (`_session_release`): the session's active turn stopped being active.
                //   That change holds the turn's row lock until it commits, and the session had no
                //   other active turn, so the next goes through at once. The sessions a statement
                //   released are collected (a transaction-local setting) and let through together
                //   when the statement ends: one statement for a whole batch of outcomes.
                // - admit (`_session_admit`): anything else (a turn inserted, retried by an
                //   operator, moved by hand). It takes the session's lock (a transaction-scoped
                //   advisory lock, so admits of one session run one at a time), waits for whoever
                //   is changing the active turn (its row lock), and looks again with a snapshot
                //   taken after that: a turn let through by a release that committed meanwhile is seen.
                """
                CREATE OR REPLACE FUNCTION "\(schemaName)"."\(tableName)_session_let_through"(sessions uuid[]) RETURNS void
                LANGUAGE plpgsql
                -- The update below names the waiting state through variables, and its plan is
                -- generic: the planner cannot then walk the whole index of waiting turns to find
                -- the few it lets through (with a few waiting when statistics were taken, it
                -- did, once per call: quadratic in a batch). It goes by id.
                SET plan_cache_mode = force_generic_plan
                AS $$
                DECLARE
                    missed uuid[];
                    admitted bigint;
                    waiting_status text := 'pending';
                    still_held boolean := true;
                BEGIN
                    LOOP
                        -- Each session's oldest waiting turn (one index probe a session), let through.
                        WITH next AS (
                            SELECT n.id, s.session FROM (SELECT DISTINCT unnest(sessions) AS session) AS s
                            CROSS JOIN LATERAL (
                                SELECT w.id FROM \(table) AS w
                                WHERE w.session_id = s.session AND w.status = 'pending' AND w.held_by_session
                                ORDER BY w.created_at, w.id LIMIT 1
                            ) AS n
                        ), let_through AS (
                            UPDATE \(table) AS t SET held_by_session = false,
                                session_has_waiting = EXISTS (
                                    SELECT 1 FROM \(table) AS b WHERE b.session_id = t.session_id AND b.status = 'pending'
                                        AND b.held_by_session AND b.id <> t.id)
                            FROM next
                            WHERE t.id = next.id AND t.status = waiting_status AND t.held_by_session = still_held
                            RETURNING t.session_id
                        )
                        SELECT (SELECT count(*) FROM let_through),
                            (SELECT array_agg(next.session) FROM next WHERE next.session NOT IN (SELECT session_id FROM let_through))
                        INTO admitted, missed;
                        IF admitted > 0 THEN
                            -- Wake the workers: a turn let through by an outcome is no insert, so
                            -- the insert trigger does not tell them.
                            PERFORM pg_notify('\(channel)', 'jobs');
                        END IF;
                        -- A turn that changed while this waited for its row (cancelled, deleted):
                        -- those sessions try their next turn.
                        EXIT WHEN missed IS NULL;
                        sessions := missed;
                    END LOOP;
                END
                $$
                """,
                """
                CREATE OR REPLACE FUNCTION "\(schemaName)"."\(tableName)_session_admit"(turn_session uuid) RETURNS void
                LANGUAGE plpgsql AS $$
                BEGIN
                    PERFORM pg_advisory_xact_lock(\(Self.sessionLockClass(tableName)), hashtext(turn_session::text));
                    PERFORM 1 FROM \(table) AS t WHERE t.session_id = turn_session AND \(Self.activeTurn("t")) FOR UPDATE;
                    IF EXISTS (SELECT 1 FROM \(table) AS t WHERE t.session_id = turn_session AND \(Self.activeTurn("t"))) THEN
                        -- The turn waits: its session's active turn must let it through when it ends.
                        UPDATE \(table) AS t SET session_has_waiting = true
                        WHERE t.session_id = turn_session AND \(Self.activeTurn("t")) AND NOT t.session_has_waiting;
                    ELSE
                        PERFORM "\(schemaName)"."\(tableName)_session_let_through"(ARRAY[turn_session]);
                    END IF;
                END
                $$
                """,
                // At the end of each UPDATE or DELETE statement: the sessions whose active turn it
                // released move on, together.
                """
                CREATE OR REPLACE FUNCTION "\(schemaName)"."\(tableName)_session_release"() RETURNS trigger
                LANGUAGE plpgsql AS $$
                DECLARE
                    released text := current_setting('\(releasedSetting)', true);
                BEGIN
                    IF released IS NULL OR released = '' THEN
                        RETURN NULL;
                    END IF;
                    PERFORM set_config('\(releasedSetting)', '', true);
                    PERFORM "\(schemaName)"."\(tableName)_session_let_through"(string_to_array(rtrim(released, ','), ',')::uuid[]);
                    RETURN NULL;
                END
                $$
                """,
                // A turn that becomes pending (inserted, retried, rescued, given back) waits for
                // its session; the AFTER trigger then lets it through if it is next.
                """
                CREATE OR REPLACE FUNCTION "\(schemaName)"."\(tableName)_session_hold"() RETURNS trigger
                LANGUAGE plpgsql AS $$
                BEGIN
                    NEW.held_by_session := true;
                    NEW.blocks_session := false;
                    RETURN NEW;
                END
                $$
                """,
                """
                CREATE OR REPLACE FUNCTION "\(schemaName)"."\(tableName)_session_changed"() RETURNS trigger
                LANGUAGE plpgsql AS $$
                BEGIN
                    IF TG_OP = 'INSERT' THEN
                        PERFORM "\(schemaName)"."\(tableName)_session_admit"(NEW.session_id);
                    ELSIF TG_OP = 'DELETE' THEN
                        PERFORM set_config('\(releasedSetting)', coalesce(current_setting('\(releasedSetting)', true), '') || OLD.session_id::text || ',', true);
                    ELSIF OLD.session_id IS NOT DISTINCT FROM NEW.session_id THEN
                        IF \(Self.activeTurn("OLD")) THEN
                            -- The active turn stopped being active (it finished, failed, was given
                            -- back, rescued, or its cancellation completed): released at the
                            -- statement's end.
                            PERFORM set_config('\(releasedSetting)', coalesce(current_setting('\(releasedSetting)', true), '') || NEW.session_id::text || ',', true);
                        ELSE
                            -- A turn started waiting (an operator's retry, a change by hand).
                            PERFORM "\(schemaName)"."\(tableName)_session_admit"(NEW.session_id);
                        END IF;
                    ELSE
                        -- A turn moved to another session by hand: both sessions admit, in id order.
                        IF OLD.session_id IS NOT NULL AND (NEW.session_id IS NULL OR OLD.session_id < NEW.session_id) THEN
                            PERFORM "\(schemaName)"."\(tableName)_session_admit"(OLD.session_id);
                        END IF;
                        IF NEW.session_id IS NOT NULL THEN
                            PERFORM "\(schemaName)"."\(tableName)_session_admit"(NEW.session_id);
                        END IF;
                        IF OLD.session_id IS NOT NULL AND NEW.session_id IS NOT NULL AND OLD.session_id > NEW.session_id THEN
                            PERFORM "\(schemaName)"."\(tableName)_session_admit"(OLD.session_id);
                        END IF;
                    END IF;
                    RETURN NULL;
                END
                $$
                """,
                "DROP TRIGGER IF EXISTS \"\(tableName)_session_hold_insert\" ON \(table)",
                """
                CREATE TRIGGER "\(tableName)_session_hold_insert" BEFORE INSERT ON \(table)
                    FOR EACH ROW WHEN (NEW.session_id IS NOT NULL AND NEW.status = 'pending')
                    EXECUTE FUNCTION "\(schemaName)"."\(tableName)_session_hold"()
                """,
                "DROP TRIGGER IF EXISTS \"\(tableName)_session_hold_update\" ON \(table)",
                """
                CREATE TRIGGER "\(tableName)_session_hold_update" BEFORE UPDATE ON \(table)
                    FOR EACH ROW WHEN (NEW.session_id IS NOT NULL AND NEW.status = 'pending'
                        AND (OLD.status <> 'pending' OR OLD.session_id IS DISTINCT FROM NEW.session_id))
                    EXECUTE FUNCTION "\(schemaName)"."\(tableName)_session_hold"()
                """,
                "DROP TRIGGER IF EXISTS \"\(tableName)_session_insert\" ON \(table)",
                """
                CREATE TRIGGER "\(tableName)_session_insert" AFTER INSERT ON \(table)
                    FOR EACH ROW WHEN (NEW.session_id IS NOT NULL)
                    EXECUTE FUNCTION "\(schemaName)"."\(tableName)_session_changed"()
                """,
                // Fires only when a turn starts waiting, or stops being active while turns wait
                // behind it or to wait itself (not for a claim, a renewal, a promotion, nor a
                // turn that ends with none behind it), so most writes never call it.
                "DROP TRIGGER IF EXISTS \"\(tableName)_session_update\" ON \(table)",
                """
                CREATE TRIGGER "\(tableName)_session_update" AFTER UPDATE ON \(table)
                    FOR EACH ROW WHEN ((OLD.session_id IS NOT NULL OR NEW.session_id IS NOT NULL) AND (
                        OLD.session_id IS DISTINCT FROM NEW.session_id
                        OR (\(Self.activeTurn("OLD")) AND NOT \(Self.activeTurn("NEW")) AND (OLD.session_has_waiting OR NEW.status = 'pending'))
                        OR (NEW.status = 'pending' AND NEW.held_by_session AND NOT (OLD.status = 'pending' AND OLD.held_by_session))))
                    EXECUTE FUNCTION "\(schemaName)"."\(tableName)_session_changed"()
                """,
                "DROP TRIGGER IF EXISTS \"\(tableName)_session_delete\" ON \(table)",
                """
                CREATE TRIGGER "\(tableName)_session_delete" AFTER DELETE ON \(table)
                    FOR EACH ROW WHEN (OLD.session_id IS NOT NULL AND \(Self.activeTurn("OLD")) AND OLD.session_has_waiting)
                    EXECUTE FUNCTION "\(schemaName)"."\(tableName)_session_changed"()
                """,
                "DROP TRIGGER IF EXISTS \"\(tableName)_session_release\" ON \(table)",
                """
                CREATE TRIGGER "\(tableName)_session_release" AFTER UPDATE OR DELETE ON \(table)
                    FOR EACH STATEMENT EXECUTE FUNCTION "\(schemaName)"."\(tableName)_session_release"()
                """,
            ],
        ]
    }

    /// True for a row (`alias`) that is its session's active turn: running, due to run, a
    /// failure that holds the session (`SESSION_ON_FAILURE=block`), or cancelled while its
    /// worker is still stopping it (the lease is cleared when the command has stopped).
    static func activeTurn(_ alias: String?) -> String {
        let alias = alias.map { "\($0)." } ?? ""
        return """
        (\(alias)status = 'processing' OR (\(alias)status = 'pending' AND NOT \(alias)held_by_session) \
        OR (\(alias)status = 'failed' AND \(alias)blocks_session) OR (\(alias)status = 'cancelled' AND \(alias)lease_expires_at IS NOT NULL))
        """
    }

    /// The transaction-local setting in which a statement's row triggers collect the sessions
    /// whose active turn it released (comma-separated ids), for its statement trigger.
    var releasedSetting: String { "mobvibe.released_\(tableName.lowercased())" }

    /// The first key of the sessions' advisory locks (the second is the session id's hash): one
    /// class per table, apart from the one-key locks of migrations and retention.
    static func sessionLockClass(_ tableName: String) -> String {
        "hashtext('mobvibe-worker:session:\(tableName)')"
    }

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
        held_by_session, blocks_session
        """

    /// ``columns`` for a summary listing (``JobFilter/summary``): the same columns in the same
    /// order, without the big values.
    static let summaryColumns = """
        id, queue, session_id, left(prompt, \(JobFilter.summaryPromptLength)), '{}'::text, status, priority, run_at, attempts, \
        max_attempts, NULL::text, NULL::text, created_at, started_at, completed_at, locked_by, lease_expires_at, \
        held_by_session, blocks_session
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
    /// in Unix seconds (negative: now, by the database's clock), `$8` max attempts.
    private static func enqueueStatement(table: String) -> StoreStatement.Text {
        StoreStatement.Text(
            name: "mobvibe_enqueue",
            sql: """
                INSERT INTO \(table) (id, queue, session_id, prompt, payload, priority, run_at, max_attempts, status)
                SELECT id, queue, NULLIF(session_id, '')::uuid, prompt, payload::jsonb, priority::integer,
                    CASE WHEN run_at < 0 THEN now() ELSE to_timestamp(run_at) END, max_attempts::integer, 'pending'
                FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::float8[], $8::bigint[])
                    AS t(id, queue, session_id, prompt, payload, priority, run_at, max_attempts)
                """
        )
    }

    /// The claim: `$1` queues, `$2` how many, `$3` the worker's id, `$4` the lease in milliseconds.
    private static func claimStatement(table: String) -> StoreStatement.Text {
        StoreStatement.Text(
            name: "mobvibe_claim",
            sql: """
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
                RETURNING \(Self.claimColumns)
                """
        )
    }

    /// Outcomes of many jobs, each row applied only while its lease holds: `$1` ids, `$2` worker
    /// ids, `$3` attempts, `$4` kinds (completed, retry, failed, released), `$5` results,
    /// `$6` errors, `$7` retry delays in milliseconds, `$8` the status `processing`. Returns the
    /// ids it applied. A turn that fails for good holds its session when `failureBlocksSession`
    /// (``SessionFailurePolicy/block``).
    private static func recordStatement(table: String, failureBlocksSession: Bool) -> StoreStatement.Text {
        StoreStatement.Text(
            name: "mobvibe_record",
            sql: """
                UPDATE \(table) AS j SET
                    status = CASE v.kind WHEN 'completed' THEN 'completed' WHEN 'failed' THEN 'failed' ELSE 'pending' END,
                    result = CASE WHEN v.kind = 'completed' THEN v.result::jsonb ELSE j.result END,
                    last_error = CASE WHEN v.kind IN ('retry', 'failed') THEN v.error ELSE j.last_error END,
                    run_at = CASE WHEN v.kind = 'retry' THEN now() + v.delay_ms * interval '1 millisecond' ELSE j.run_at END,
                    attempts = CASE WHEN v.kind = 'released' THEN j.attempts - 1 ELSE j.attempts END,
                    completed_at = CASE WHEN v.kind IN ('completed', 'failed') THEN now() ELSE NULL END,
                    blocks_session = (v.kind = 'failed' AND j.session_id IS NOT NULL AND \(failureBlocksSession)),
                    locked_by = NULL, lease_expires_at = NULL
                FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::bigint[])
                    AS v(id, worker, attempt, kind, result, error, delay_ms)
                -- $8 is 'processing', passed as a value: as a literal it would let a cached generic
                -- plan (made for an unknown number of outcomes) walk the partial lease index, with
                -- its dead entries, instead of looking each job up by id.
                WHERE j.id = v.id AND j.status = $8::text AND j.locked_by = v.worker AND j.attempts = v.attempt
                RETURNING j.id
                """
        )
    }

    /// The common batch, completions only, all by one worker: `$1` ids, `$2` attempts, `$3`
    /// results, `$4` the worker's id, `$5` the status `processing`. Does what
    /// ``recordStatement(table:)`` does for completions, with three arrays instead of seven and
    /// no per-row choices. Returns the ids it applied.
    private static func completeStatement(table: String) -> StoreStatement.Text {
        StoreStatement.Text(
            name: "mobvibe_complete",
            sql: """
                UPDATE \(table) AS j SET
                    status = 'completed', result = v.result::jsonb, completed_at = now(),
                    locked_by = NULL, lease_expires_at = NULL
                FROM unnest($1::uuid[], $2::bigint[], $3::text[]) AS v(id, attempt, result)
                WHERE j.id = v.id AND j.status = $5::text AND j.locked_by = $4::text AND j.attempts = v.attempt
                RETURNING j.id
                """
        )
    }
}
