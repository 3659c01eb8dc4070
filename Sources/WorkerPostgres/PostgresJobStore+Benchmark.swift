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
            // Every function and domain the migrations made for the table, by the names they
            // share (the table's and its events table's, then `_`): naming them one by one left
            // the session functions and the value domains behind, eight objects a run.
            let prefixes = [schema.tableName + "_", JobEvent.tableName(forJobsTable: schema.tableName) + "_"]
            _ = try await client.query(
                PostgresQuery(unsafeSQL: """
                    DO $$ DECLARE made record; BEGIN
                        FOR made IN SELECT p.oid::regprocedure AS name FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace
                            WHERE n.nspname = \(PostgresSchema.literal(schema.schemaName))
                                AND (starts_with(p.proname, \(PostgresSchema.literal(prefixes[0]))) OR starts_with(p.proname, \(PostgresSchema.literal(prefixes[1]))))
                        LOOP
                            EXECUTE 'DROP FUNCTION IF EXISTS ' || made.name || ' CASCADE';
                        END LOOP;
                        FOR made IN SELECT t.oid::regtype AS name FROM pg_type AS t JOIN pg_namespace AS n ON n.oid = t.typnamespace
                            WHERE n.nspname = \(PostgresSchema.literal(schema.schemaName)) AND t.typtype = 'd'
                                AND starts_with(t.typname, \(PostgresSchema.literal(prefixes[0])))
                        LOOP
                            EXECUTE 'DROP DOMAIN IF EXISTS ' || made.name || ' CASCADE';
                        END LOOP;
                    END $$
                    """),
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
