import Logging
import ServiceLifecycle
import WorkerCore
import WorkerSQLite

/// Opens the ``JobStore`` that `DATABASE_URL` names.
public enum JobStoreConnector {
    /// An open store, and the service (a connection pool) that must run beside it, if any.
    public struct Connection: Sendable {
        public var store: any JobStore
        public var service: (any Service)?
    }

    /// Opens the store and applies migrations.
    public static func open(_ location: StoreLocation, logger: Logger) async throws -> Connection {
        switch location {
        case .sqlite(let path):
            var storeLogger = logger
            storeLogger[metadataKey: "store"] = "sqlite"
            let store = try await SQLiteJobStore.open(path: path, logger: storeLogger)
            do {
                try await store.migrate()
            } catch {
                try? await store.close()
                throw error
            }
            return Connection(store: store, service: nil)
        case .postgres:
            throw WorkerServiceError.unsupportedStore(
                "DATABASE_URL names PostgreSQL, which this build does not support yet; use sqlite:PATH or leave DATABASE_URL unset"
            )
        }
    }
}
