import PostgresNIO

/// One of the store's hot statements (enqueue, claim, outcome writes), run as a named prepared
/// statement: parsed and planned once per connection instead of on every call. Measured with
/// pgbench on the claim and outcome statements: about a fifth less PostgreSQL CPU per job; on the
/// enqueue of one job: 0.32 -> 0.23 ms (docs/BENCHMARKS.md).
///
/// PostgresNIO reads a prepared statement's name and SQL from static properties, while ours name
/// the configured table. So they are handed over in a task-local for the duration of one
/// `PostgresClient.execute` call, which reads them before its first suspension (PostgresNIO
/// 1.33.2, `PostgresClient.execute(_:logger:)`), and the bindings travel with the value.
struct StoreStatement: PostgresPreparedStatement {
    /// The statement's name on each connection and its SQL, with `$n` placeholders whose casts
    /// match the Swift types bound to them (no parameter types are sent with the preparation).
    struct Text: Sendable {
        var name: String
        var sql: String
    }

    /// Outside `$current.withValue`, a statement that fails with a message saying so.
    @TaskLocal static var current = Text(
        name: "mobvibe_unset",
        sql: "SELECT CAST('StoreStatement executed outside StoreStatement.$current.withValue' AS integer)"
    )

    static var name: String { current.name }
    static var sql: String { current.sql }

    typealias Row = PostgresRow

    var bindings: PostgresBindings

    func makeBindings() throws -> PostgresBindings { bindings }

    func decodeRow(_ row: PostgresRow) throws -> PostgresRow { row }
}
