import WorkerCore

/// The SQLite schema of the jobs table, versioned per table in `worker_schema_migrations`.
enum SQLiteSchema {
    /// The newest schema version this code creates and understands.
    static let version = 2

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
        ]
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
        run_at, attempts, max_attempts, NULL AS last_error, NULL AS result, created_at, started_at, completed_at, locked_by, lease_expires_at
        """

    /// The columns every query returns, in the order ``SQLiteJobStore`` decodes them.
    static let columns = """
        id, queue, session_id, prompt, payload, status, priority, run_at, attempts, max_attempts, \
        last_error, result, created_at, started_at, completed_at, locked_by, lease_expires_at
        """
}
