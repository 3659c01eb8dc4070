import Foundation
import WorkerCore
import WorkerSQLite

/// Runs `body` with a migrated SQLite store on a fresh file, removed afterwards.
public func withTemporarySQLiteStore(
    sessionOnFailure: SessionFailurePolicy = .continue, _ body: (SQLiteJobStore) async throws -> Void
) async throws {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("worker-sqlite-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    let store = try await SQLiteJobStore.open(path: folder.appendingPathComponent("jobs.sqlite").path, sessionOnFailure: sessionOnFailure)
    do {
        try await store.migrate()
        try await body(store)
    } catch {
        try? await store.close()
        throw error
    }
    try await store.close()
}
