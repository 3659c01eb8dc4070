import Logging
import PostgresNIO

/// Supabase's client roles (`anon`, `authenticated`: every request made with the project's
/// public key or a user's token) and the worker's tables.
///
/// A Supabase project grants those roles every right on each new table of `public` (`ALTER
/// DEFAULT PRIVILEGES`). A table the worker created was therefore open to anyone holding the
/// app's anon key, through PostgREST, until `worker migrate --supabase` ran, and for good when
/// it never did (the default, `SUPABASE_RLS=false`): everyone's prompts and results readable,
/// jobs insertable into any queue. Now the migration that creates a table takes those rights
/// back in its own transaction, and each start warns about a table they can still reach
/// without row-level security.
extension PostgresJobStore {
    /// Takes every right on `tables` from Supabase's client roles, where the database has them.
    /// Run in the transaction that created the tables; the worker (their owner) and
    /// `service_role` (which a backend uses) keep theirs.
    static func closeToClients(_ tables: [String], on connection: PostgresConnection, logger: Logger) async throws {
        guard !tables.isEmpty else { return }
        let roles = try await connection.query(
            "SELECT rolname::text FROM pg_roles WHERE rolname IN ('anon', 'authenticated') ORDER BY 1", logger: logger
        ).collect().map { try $0.decode(String.self) }
        guard !roles.isEmpty else { return }
        let grantees = roles.map { "\"\($0)\"" }.joined(separator: ", ")
        _ = try await connection.query(
            PostgresQuery(unsafeSQL: "REVOKE ALL ON TABLE \(tables.joined(separator: ", ")) FROM \(grantees)"), logger: logger)
    }

    /// Warns when a client role can read or change the jobs, events or migrations table with no
    /// row-level security in the way: created by an older worker, granted by hand, or row-level
    /// security turned off after `worker migrate --supabase` (the table editor's switch). (The
    /// migrations table: a row naming a newer version, added through the REST API, stops every
    /// worker's start.)
    func warnAboutOpenTables() async throws {
        let rows = try await client.query(
            """
            SELECT c.relname::text, r.rolname::text
            FROM pg_class AS c CROSS JOIN pg_roles AS r
            WHERE c.oid IN (to_regclass(\(schema.table)), to_regclass(\(schema.eventsTable)), to_regclass(\(schema.migrationsTable)))
              AND NOT c.relrowsecurity
              AND r.rolname IN ('anon', 'authenticated')
              AND has_table_privilege(r.oid, c.oid, 'SELECT, INSERT, UPDATE, DELETE')
            ORDER BY 1, 2
            """,
            logger: logger
        ).collect()
        guard !rows.isEmpty else { return }
        var open: [String: [String]] = [:]
        for row in rows {
            let (table, role) = try row.decode((String, String).self)
            open[table, default: []].append(role)
        }
        for (table, roles) in open.sorted(by: { $0.key < $1.key }) {
            logger.warning(
                "Supabase's client roles can reach a table of the worker with no row-level security: anyone with the project's anon key can read everyone's jobs and add jobs through its REST API",
                metadata: [
                    "table": .string("\(schema.schemaName).\(table)"), "roles": .string(roles.joined(separator: ",")),
                    "fix": .string(
                        "run `worker migrate --supabase` (and set SUPABASE_RLS=true) for an app whose users reach the table, "
                            + "or REVOKE ALL ON \"\(schema.schemaName)\".\"\(table)\" FROM \(roles.joined(separator: ", "))"),
                ])
        }
    }
}
