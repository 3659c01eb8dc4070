import Foundation
import Logging
import PostgresNIO
import WorkerCore

/// What `worker bench` needs of the store (``BenchmarkJobStore``).
extension PostgresJobStore {
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
            _ = try await client.query(PostgresQuery(unsafeSQL: "DROP TABLE IF EXISTS \(schema.eventsTable)"), logger: logger).collect()
            _ = try await client.query(PostgresQuery(unsafeSQL: "DROP TABLE IF EXISTS \(table) CASCADE"), logger: logger).collect()
            _ = try await client.query(
                PostgresQuery(unsafeSQL: "DROP FUNCTION IF EXISTS \"\(schema.schemaName)\".\"\(schema.tableName)_notify\"() CASCADE"),
                logger: logger
            ).collect()
            _ = try await client.query(
                PostgresQuery(unsafeSQL: "DROP FUNCTION IF EXISTS \"\(schema.schemaName)\".\"\(schema.tableName)_delete_events\"() CASCADE"),
                logger: logger
            ).collect()
            _ = try await client.query(
                PostgresQuery(unsafeSQL: "DROP FUNCTION IF EXISTS \"\(schema.schemaName)\".\"\(schema.tableName)_new_id\"() CASCADE"),
                logger: logger
            ).collect()
            _ = try await client.query(
                "DELETE FROM \(unescaped: schema.migrationsTable) WHERE table_name = \(schema.tableName)",
                logger: logger
            ).collect()
        }
    }
}

extension PostgresJobStore {
    /// The statements of a job's way through the queue on `table` (claim, completion), by their
    /// prepared names, with their parameters as `$n`: what `worker bench statements` prints for
    /// `scripts/bench-floor`, which runs them through pgbench (a client that costs nothing) to
    /// measure what PostgreSQL alone can do with a job's work, beside what the worker does.
    public static func hotPathStatements(
        schema: String, table: String, sessionOnFailure: SessionFailurePolicy
    ) -> [(name: String, sql: String)] {
        let statements = PostgresSchema(schema: schema, table: table, sessionOnFailure: sessionOnFailure)
        return [statements.claimStatement, statements.completeStatement].map { ($0.name, $0.sql) }
    }
}
