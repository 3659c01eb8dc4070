import WorkerCore

/// The SQLite schema of the jobs table, versioned per table in `worker_schema_migrations`.
enum SQLiteSchema {
    /// The newest schema version this code creates and understands.
    static let version = 7

    /// Milliseconds since the Unix epoch, as a column default.
    static let nowMilliseconds = "(CAST(unixepoch('subsec') * 1000 AS INTEGER))"

    /// A random (version 4) UUID in lower-case text, as a column default, so that a hand-written
    /// `INSERT INTO coding_jobs (prompt) VALUES ('...')` makes a valid job.
    static let randomUUID = """
        (lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' || substr(lower(hex(randomblob(2))), 2) || '-' || \
        substr('89ab', 1 + (abs(random()) % 4), 1) || substr(lower(hex(randomblob(2))), 2) || '-' || lower(hex(randomblob(6))))
        """

    /// The statements that bring a database from `version - 1` to `version`, one statement each.
    static func migrations(table: String) -> [Int: [String]] {
        [
            1: [
                """
                CREATE TABLE IF NOT EXISTS "\(table)" (
                    id TEXT PRIMARY KEY NOT NULL DEFAULT \(randomUUID),
                    queue TEXT NOT NULL DEFAULT 'default',
                    session_id TEXT,
                    prompt TEXT NOT NULL,
                    payload TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(payload) AND json_type(payload) = 'object'),
                    status TEXT NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'cancelled')),
                    priority INTEGER NOT NULL DEFAULT 0,
                    run_at INTEGER NOT NULL DEFAULT \(nowMilliseconds),
                    attempts INTEGER NOT NULL DEFAULT 0,
                    max_attempts INTEGER NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
                    last_error TEXT,
                    result TEXT,
                    created_at INTEGER NOT NULL DEFAULT \(nowMilliseconds),
                    started_at INTEGER,
                    completed_at INTEGER,
                    locked_by TEXT,
                    lease_expires_at INTEGER
                )
                """,
                """
                CREATE INDEX IF NOT EXISTS "\(table)_claim" ON "\(table)" (queue, priority DESC, run_at, id)
                    WHERE status = 'pending'
                """,
                """
                CREATE INDEX IF NOT EXISTS "\(table)_lease" ON "\(table)" (lease_expires_at) WHERE status = 'processing'
                """,
                """
                CREATE INDEX IF NOT EXISTS "\(table)_status" ON "\(table)" (status, created_at)
                """,
                """
                CREATE INDEX IF NOT EXISTS "\(table)_finished" ON "\(table)" (status, completed_at)
                    WHERE status IN ('completed', 'failed', 'cancelled')
                """,
            ],
            2: [
                // Ids are lower-case text, and every statement compares them as such. A row
                // written by hand with an upper-case UUID (Swift's `uuidString` is upper case)
                // would be claimed and then missed by every renewal and outcome write, so ids
                // (and session ids) are made lower case as rows arrive, and existing ones now.
                "UPDATE OR IGNORE \"\(table)\" SET id = lower(id) WHERE id <> lower(id)",
                "UPDATE \"\(table)\" SET session_id = lower(session_id) WHERE session_id <> lower(session_id)",
                """
                CREATE TRIGGER IF NOT EXISTS "\(table)_lowercase_ids" AFTER INSERT ON "\(table)"
                WHEN NEW.id <> lower(NEW.id) OR NEW.session_id <> lower(NEW.session_id)
                BEGIN
                    UPDATE "\(table)" SET id = lower(NEW.id), session_id = lower(NEW.session_id) WHERE rowid = NEW.rowid;
                END
                """,
                // The queue-name and priority rules of NewJob.validate(), for rows written by hand
                // (a CHECK cannot be added to an existing SQLite table without rebuilding it).
                """
                CREATE TRIGGER IF NOT EXISTS "\(table)_check_insert" BEFORE INSERT ON "\(table)"
                WHEN \(invalidQueueOrPriority)
                BEGIN
                    SELECT RAISE(ABORT, '\(checkMessage)');
                END
                """,
                """
                CREATE TRIGGER IF NOT EXISTS "\(table)_check_update" BEFORE UPDATE OF queue, priority ON "\(table)"
                WHEN \(invalidQueueOrPriority)
                BEGIN
                    SELECT RAISE(ABORT, '\(checkMessage)');
                END
                """,
            ],
            // Coding sessions (docs/WORKER_SERVICE.md, "Sessions"): one turn of a session at a
            // time, in order, kept by triggers for any writer. SQLite runs one write transaction
            // at a time, so the triggers need no lock of their own.
            3: [
                "ALTER TABLE \"\(table)\" ADD COLUMN held_by_session INTEGER NOT NULL DEFAULT 0",
                "ALTER TABLE \"\(table)\" ADD COLUMN blocks_session INTEGER NOT NULL DEFAULT 0",
                "UPDATE \"\(table)\" SET held_by_session = 1 WHERE session_id IS NOT NULL AND status = 'pending'",
                """
                UPDATE "\(table)" SET held_by_session = 0
                WHERE id IN (
                    SELECT (SELECT w.id FROM "\(table)" AS w WHERE w.session_id = s.session_id AND w.status = 'pending'
                            ORDER BY w.created_at, w.id LIMIT 1)
                    FROM (SELECT DISTINCT session_id FROM "\(table)" WHERE session_id IS NOT NULL AND status = 'pending') AS s
                    WHERE NOT EXISTS (SELECT 1 FROM "\(table)" AS r WHERE r.session_id = s.session_id AND r.status = 'processing')
                )
                """,
                "DROP INDEX IF EXISTS \"\(table)_claim\"",
                """
                CREATE INDEX IF NOT EXISTS "\(table)_claim" ON "\(table)" (queue, priority DESC, run_at, id)
                    WHERE status = 'pending' AND held_by_session = 0
                """,
                """
                CREATE INDEX IF NOT EXISTS "\(table)_session_turn" ON "\(table)" (session_id)
                    WHERE session_id IS NOT NULL AND \(activeTurn(nil))
                """,
                """
                CREATE INDEX IF NOT EXISTS "\(table)_session_wait" ON "\(table)" (session_id, created_at, id)
                    WHERE status = 'pending' AND held_by_session = 1
                """,
                // The triggers as version 7 makes them again (a new file gets them here, then again there).
                sessionInsertTrigger(table: table),
                sessionUpdateTrigger(table: table),
                sessionDeleteTrigger(table: table),
            ],
            // Live job events (docs/WORKER_SERVICE.md, "Job events"): numbered per job, deleted
            // with their job (a trigger: foreign keys need a pragma on every connection).
            4: [
                // What agents report spending, summed over a job's attempts (JobUsage).
                "ALTER TABLE \"\(table)\" ADD COLUMN input_tokens INTEGER NOT NULL DEFAULT 0",
                "ALTER TABLE \"\(table)\" ADD COLUMN output_tokens INTEGER NOT NULL DEFAULT 0",
                "ALTER TABLE \"\(table)\" ADD COLUMN cost_usd REAL NOT NULL DEFAULT 0",
                """
                CREATE TABLE IF NOT EXISTS "\(JobEvent.tableName(forJobsTable: table))" (
                    job_id TEXT NOT NULL,
                    seq INTEGER NOT NULL,
                    attempt INTEGER NOT NULL,
                    created_at INTEGER NOT NULL DEFAULT \(nowMilliseconds),
                    kind TEXT NOT NULL,
                    data TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(data) AND json_type(data) = 'object'),
                    PRIMARY KEY (job_id, seq)
                ) WITHOUT ROWID
                """,
                """
                CREATE TRIGGER IF NOT EXISTS "\(table)_events_delete" AFTER DELETE ON "\(table)"
                BEGIN
                    DELETE FROM "\(JobEvent.tableName(forJobsTable: table))" WHERE job_id = OLD.id;
                END
                """,
            ],
            // What the worker measured of a job's attempts (JobUsage): CPU time and run time
            // summed, the largest peak memory.
            5: [
                "ALTER TABLE \"\(table)\" ADD COLUMN cpu_seconds REAL NOT NULL DEFAULT 0",
                "ALTER TABLE \"\(table)\" ADD COLUMN peak_memory_bytes INTEGER NOT NULL DEFAULT 0",
                "ALTER TABLE \"\(table)\" ADD COLUMN run_seconds REAL NOT NULL DEFAULT 0",
            ],
            // The user a job is for (NULL for a system job), as PostgreSQL's version 7.
            6: [
                "ALTER TABLE \"\(table)\" ADD COLUMN user_id TEXT",
                "CREATE INDEX IF NOT EXISTS \"\(table)_user_idx\" ON \"\(table)\" (user_id, created_at DESC) WHERE user_id IS NOT NULL",
            ],
            7: sessionRepairs(table: table),
        ]
    }

    /// Version 7: sessions kept by the database for writes by hand that version 3's triggers
    /// missed. Its triggers are made again: a turn waiting behind others is now let through in
    /// the order its rows were written (`rowid`) where their `created_at` ties (rows of one
    /// `INSERT`, whose random ids had decided); a turn whose `session_id` is set to NULL is no
    /// longer held for good; a `session_id` written in upper case is made lower case (only
    /// inserts were, and such a turn waited for good); a turn that is running or being stopped
    /// can neither be moved into a session that has an active turn nor deleted (its session's
    /// next turn started beside its command). A unique index, as PostgreSQL has, cannot do
    /// this here: SQLite has no trigger that changes a row before it is checked, so a turn
    /// inserted by hand behind a running one would be refused.
    static func sessionRepairs(table: String) -> [String] {
        [
            "DROP TRIGGER IF EXISTS \"\(table)_session_insert\"",
            "DROP TRIGGER IF EXISTS \"\(table)_session_update\"",
            "DROP TRIGGER IF EXISTS \"\(table)_session_delete\"",
            sessionInsertTrigger(table: table),
            sessionUpdateTrigger(table: table),
            sessionDeleteTrigger(table: table),
            """
            CREATE TRIGGER IF NOT EXISTS "\(table)_lowercase_session" AFTER UPDATE OF session_id ON "\(table)"
            WHEN NEW.session_id <> lower(NEW.session_id)
            BEGIN
                UPDATE "\(table)" SET session_id = lower(NEW.session_id) WHERE rowid = NEW.rowid;
            END
            """,
            """
            CREATE TRIGGER IF NOT EXISTS "\(table)_session_move_check" BEFORE UPDATE OF session_id ON "\(table)"
            WHEN NEW.session_id IS NOT NULL AND lower(NEW.session_id) IS NOT lower(OLD.session_id) AND \(runningTurn("NEW"))
                AND EXISTS (SELECT 1 FROM "\(table)" AS a WHERE a.session_id = lower(NEW.session_id) AND a.rowid <> NEW.rowid AND \(activeTurn("a")))
            BEGIN
                SELECT RAISE(ABORT, 'a running job cannot join a session that has an active turn: its turns would run at the same time');
            END
            """,
            """
            CREATE TRIGGER IF NOT EXISTS "\(table)_session_delete_check" BEFORE DELETE ON "\(table)"
            WHEN OLD.session_id IS NOT NULL AND \(runningTurn("OLD"))
            BEGIN
                SELECT RAISE(ABORT, 'a running turn of a session cannot be deleted: its session''s next turn would start beside its command; cancel it first (worker jobs cancel ID), then delete it once it has stopped');
            END
            """,
        ]
    }

    /// True for a row (`alias`) whose command may be running: claimed, or cancelled while its
    /// worker is still stopping it.
    static func runningTurn(_ alias: String) -> String {
        "(\(alias).status = 'processing' OR (\(alias).status = 'cancelled' AND \(alias).lease_expires_at IS NOT NULL))"
    }

    static func sessionInsertTrigger(table: String) -> String {
        """
        CREATE TRIGGER IF NOT EXISTS "\(table)_session_insert" AFTER INSERT ON "\(table)"
        WHEN NEW.session_id IS NOT NULL
        BEGIN
            UPDATE "\(table)" SET held_by_session = 1, blocks_session = 0 WHERE rowid = NEW.rowid AND status = 'pending';
            \(advance(table: table, session: "lower(NEW.session_id)"));
        END
        """
    }

    /// Fires when a turn starts waiting (inserted, retried, rescued, given back), stops being its
    /// session's active turn, or changes session; not for a claim or a renewal. A row whose
    /// session is taken away is held by nothing.
    static func sessionUpdateTrigger(table: String) -> String {
        """
        CREATE TRIGGER IF NOT EXISTS "\(table)_session_update" AFTER UPDATE ON "\(table)"
        WHEN (OLD.session_id IS NOT NULL OR NEW.session_id IS NOT NULL) AND (
            OLD.session_id IS NOT NEW.session_id
            OR (NEW.status = 'pending' AND OLD.status <> 'pending')
            OR (\(activeTurn("OLD")) AND NOT \(activeTurn("NEW")))
            OR (NEW.status = 'pending' AND NEW.held_by_session = 1 AND NOT (OLD.status = 'pending' AND OLD.held_by_session = 1)))
        BEGIN
            UPDATE "\(table)" SET held_by_session = 0, blocks_session = 0
            WHERE rowid = NEW.rowid AND NEW.session_id IS NULL AND (held_by_session = 1 OR blocks_session = 1);
            UPDATE "\(table)" SET held_by_session = 1, blocks_session = 0
            WHERE rowid = NEW.rowid AND session_id IS NOT NULL AND status = 'pending'
                AND (OLD.status <> 'pending' OR OLD.session_id IS NOT NEW.session_id);
            \(advance(table: table, session: "lower(OLD.session_id)"));
            \(advance(table: table, session: "lower(NEW.session_id)"));
        END
        """
    }

    static func sessionDeleteTrigger(table: String) -> String {
        """
        CREATE TRIGGER IF NOT EXISTS "\(table)_session_delete" AFTER DELETE ON "\(table)"
        WHEN OLD.session_id IS NOT NULL AND \(activeTurn("OLD"))
        BEGIN
            \(advance(table: table, session: "lower(OLD.session_id)"));
        END
        """
    }

    /// True for a row (`alias`) that is its session's active turn: running, due to run, a
    /// failure that holds the session (`SESSION_ON_FAILURE=block`), or cancelled while its
    /// worker is still stopping it.
    static func activeTurn(_ alias: String?) -> String {
        let alias = alias.map { "\($0)." } ?? ""
        return """
            (\(alias)status = 'processing' OR (\(alias)status = 'pending' AND \(alias)held_by_session = 0) \
            OR (\(alias)status = 'failed' AND \(alias)blocks_session = 1) OR (\(alias)status = 'cancelled' AND \(alias)lease_expires_at IS NOT NULL))
            """
    }

    /// Lets the oldest waiting turn of `session` (an SQL expression) through when the session
    /// has no active turn: the first written where `created_at` ties (rows of one `INSERT`).
    static func advance(table: String, session: String) -> String {
        """
        UPDATE "\(table)" SET held_by_session = 0
                    WHERE id = (SELECT w.id FROM "\(table)" AS w WHERE w.session_id = \(session) AND w.status = 'pending'
                                AND w.held_by_session = 1 ORDER BY w.created_at, w.rowid LIMIT 1)
                        AND NOT EXISTS (SELECT 1 FROM "\(table)" AS a WHERE a.session_id = \(session) AND \(activeTurn("a")))
        """
    }

    /// The column an `ALTER TABLE ... ADD COLUMN name ...` statement adds, or `nil` for any other statement.
    static func addedColumn(in statement: String) -> String? {
        guard let range = statement.range(of: " ADD COLUMN ") else { return nil }
        return statement[range.upperBound...].split(separator: " ").first.map(String.init)
    }

    /// True for a row (`NEW`) whose queue name or priority ``NewJob/validate()`` refuses.
    private static let invalidQueueOrPriority = """
        length(NEW.queue) NOT BETWEEN 1 AND 64 OR NEW.queue GLOB '*[^A-Za-z0-9_.:-]*' \
        OR NEW.priority NOT BETWEEN \(NewJob.priorityRange.lowerBound) AND \(NewJob.priorityRange.upperBound)
        """

    private static let checkMessage = """
        CHECK failed: queue must be 1 to 64 of A-Z a-z 0-9 _ . : - and priority between \
        \(NewJob.priorityRange.lowerBound) and \(NewJob.priorityRange.upperBound)
        """

    /// ``columns`` for a summary listing (``JobFilter/summary``): the same columns in the same
    /// order, without the big values.
    static let summaryColumns = """
        id, queue, session_id, substr(prompt, 1, \(JobFilter.summaryPromptLength)) AS prompt, '{}' AS payload, status, priority, \
        run_at, attempts, max_attempts, NULL AS last_error, NULL AS result, created_at, started_at, completed_at, locked_by, lease_expires_at, \
        held_by_session, blocks_session, input_tokens, output_tokens, cost_usd, cpu_seconds, peak_memory_bytes, run_seconds, user_id
        """

    /// The columns every query returns, in the order ``SQLiteJobStore`` decodes them.
    static let columns = """
        id, queue, session_id, prompt, payload, status, priority, run_at, attempts, max_attempts, \
        last_error, result, created_at, started_at, completed_at, locked_by, lease_expires_at, \
        held_by_session, blocks_session, input_tokens, output_tokens, cost_usd, cpu_seconds, peak_memory_bytes, run_seconds, user_id
        """
}
