import WorkerCore

/// Version 8: the queue name's and the payload's checks move from the table to the columns'
/// types (domains), so that they are checked when a value is written to the column, not on every
/// update of the row.
///
/// PostgreSQL evaluates every `CHECK` of a table on every `UPDATE` of a row, whichever columns
/// the update sets; a job's row is updated twice a run (claim, outcome), and neither update
/// touches its queue or payload. The queue name's regular expression and the payload's
/// `jsonb_typeof` were the costly ones: with them on the columns' types, `worker run` moved
/// 1.05-1.06x the no-op jobs a second in an A/B against the table checks (docs/BENCHMARKS.md,
/// twelfth session). A domain's check runs only when a value is
/// coerced to it: an insert, or an update that sets that column. What is refused, and the error
/// (SQLSTATE 23514, the constraint named `<table>_queue_check` or `<table>_payload_check` as
/// before), stay the same for any writer. The cheap checks (status, priority, attempts) stay on
/// the table.
extension PostgresSchema {
    /// The domains (schema-qualified, quoted name, base type, column, check of `VALUE`).
    var valueDomains: [(type: String, base: String, column: String, check: String)] {
        [
            (quoted("\(tableName)_queue_name"), "text", "queue", "VALUE ~ '\(NewJob.queueNamePattern)'"),
            (quoted("\(tableName)_payload_object"), "jsonb", "payload", "jsonb_typeof(VALUE) = 'object'"),
        ]
    }

    private func quoted(_ name: String) -> String { "\"\(schemaName)\".\"\(name)\"" }
    /// `text` as an SQL string literal.
    static func literal(_ text: String) -> String { "'" + text.replacingOccurrences(of: "'", with: "''") + "'" }

    var valueDomainMigration: [String] {
        valueDomains.flatMap { domain -> [String] in
            let constraint = "\(tableName)_\(domain.column)_check"
            let typeLiteral = Self.literal(domain.type)
            let columnType = "(SELECT atttypid FROM pg_attribute WHERE attrelid = '\(table)'::regclass AND attname = '\(domain.column)')"
            return [
                """
                DO $$ BEGIN
                    IF to_regtype(\(typeLiteral)) IS NULL THEN
                        CREATE DOMAIN \(domain.type) AS \(domain.base);
                    END IF;
                END $$
                """,
                // Without a check yet: the column's type then changes without rewriting or
                // scanning the table (only the indexes on the column are built again, the claim
                // index of pending jobs for the queue). A view, rule or policy on the column
                // forbids the change (feature_not_supported): the table then keeps its check, and
                // the worker says so after the migration.
                """
                DO $$ BEGIN
                    IF \(columnType) <> \(typeLiteral)::regtype THEN
                        ALTER TABLE \(table) ALTER COLUMN \(domain.column) TYPE \(domain.type);
                    END IF;
                EXCEPTION WHEN feature_not_supported THEN NULL;
                END $$
                """,
                // Checked for new values at once; then validated where the existing rows allow
                // it (as the table's checks were: a legacy row that breaks it leaves it to be
                // validated, which the worker logs).
                """
                DO $$ BEGIN
                    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE contypid = \(typeLiteral)::regtype AND conname = '\(constraint)') THEN
                        ALTER DOMAIN \(domain.type) ADD CONSTRAINT "\(constraint)" CHECK (\(domain.check)) NOT VALID;
                    END IF;
                END $$
                """,
                """
                DO $$ BEGIN
                    ALTER DOMAIN \(domain.type) VALIDATE CONSTRAINT "\(constraint)";
                EXCEPTION WHEN check_violation THEN NULL;
                END $$
                """,
                """
                DO $$ BEGIN
                    IF \(columnType) = \(typeLiteral)::regtype THEN
                        ALTER TABLE \(table) DROP CONSTRAINT IF EXISTS "\(constraint)";
                    END IF;
                END $$
                """,
            ]
        }
    }
}
