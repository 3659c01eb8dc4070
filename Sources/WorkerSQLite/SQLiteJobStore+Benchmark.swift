import Foundation
import Logging
import SQLiteNIO
import WorkerCore

/// What `worker bench` needs of the store (``BenchmarkJobStore``).
extension SQLiteJobStore {
    public func dropTable() async throws {
        try await lock.withLock {
            _ = try await connection.query("DROP TABLE IF EXISTS \"\(table)\"", [])
            _ = try await connection.query("DROP TABLE IF EXISTS \(eventsTable)", [])
            _ = try await connection.query("DELETE FROM worker_schema_migrations WHERE table_name = ?1", [.text(table)])
        }
    }

    public func settle() async throws {
        try await lock.withLock {
            _ = try await connection.query("ANALYZE \"\(table)\"", [])
            _ = try await connection.query("PRAGMA wal_checkpoint(TRUNCATE)", [])
        }
    }
}
