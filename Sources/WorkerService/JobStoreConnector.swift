import Logging
import WorkerCore
import WorkerPostgres
import WorkerSQLite

/// Opens the ``JobStore`` that `DATABASE_URL` names, for the duration of a closure.
public enum JobStoreConnector {
    /// Opens the store, runs `body` with it, and closes it, also when `body` throws.
    ///
    /// For PostgreSQL the connection pool runs beside `body` and stops after it; nothing
    /// connects until the first query. Migrations are the caller's (``JobStore/migrate()``).
    public static func withStore<T: Sendable>(
        _ configuration: WorkerConfiguration,
        logger: Logger,
        _ body: (any JobStore) async throws -> T
    ) async throws -> T {
        try await withBenchmarkStore(configuration, logger: logger) { store in try await body(store) }
    }

    /// ``withStore(_:logger:_:)`` for `worker bench`, whose scratch tables are dropped afterwards.
    static func withBenchmarkStore<T: Sendable>(
        _ configuration: WorkerConfiguration,
        logger: Logger,
        _ body: (any BenchmarkJobStore) async throws -> T
    ) async throws -> T {
        // Every statement is bounded on the server below the time the worker waits for a store
        // call, so that a call it gave up on cannot take effect later (StoreDeadline).
        let serverBound = configuration.processorConfiguration.serverStatementTimeout
        var storeLogger = logger
        switch configuration.store {
        case .sqlite(let path):
            storeLogger[metadataKey: "store"] = "sqlite"
            let store = try await SQLiteJobStore.open(
                path: path, table: configuration.jobsTable, busyTimeout: serverBound,
                sessionOnFailure: configuration.sessionOnFailure, logger: storeLogger)
            do {
                let result = try await body(store)
                try await store.close()
                return result
            } catch {
                try? await store.close()
                throw error
            }
        case .postgres(let text):
            storeLogger[metadataKey: "store"] = "postgres"
            let url = try PostgresURL(text)
            let store = try PostgresJobStore(
                url: url,
                schema: configuration.jobsSchema,
                table: configuration.jobsTable,
                maximumConnections: configuration.databaseMaxConnections,
                statementTimeout: serverBound,
                sessionOnFailure: configuration.sessionOnFailure,
                // As often as leases are renewed: both are how soon the worker notices a
                // connection that died without a word.
                notificationHeartbeat: configuration.leaseDuration / 3,
                logger: storeLogger
            )
            return try await withThrowingTaskGroup(of: Void.self, returning: T.self) { tasks in
                tasks.addTask { await store.run() }
                do {
                    let result = try await body(store)
                    tasks.cancelAll()
                    return result
                } catch {
                    tasks.cancelAll()
                    throw error
                }
            }
        }
    }
}
