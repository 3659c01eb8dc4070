/// The SQLite schema of the jobs table, versioned per table in `worker_schema_migrations`.
enum SQLiteSchema {
    /// The newest schema version this code creates and understands.
    static let version = 1

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
            ]
        ]
    }

    /// The columns every query returns, in the order ``SQLiteJobStore`` decodes them.
    static let columns = """
        id, queue, session_id, prompt, payload, status, priority, run_at, attempts, max_attempts, \
        last_error, result, created_at, started_at, completed_at, locked_by, lease_expires_at
        """
}
