import Foundation
import NIOPosix
import WorkerCore
import WorkerSQLite

/// The threads of the test suite's SQLite stores: dozens of tests run stores at once, and on
/// NIO's shared pool (two threads here) one store's fsyncs under a full suite's load stalled every
/// other store's calls for seconds (claims "did not answer within 5000 ms").
public let testStoreThreadPool: NIOThreadPool = {
    let pool = NIOThreadPool(numberOfThreads: 16)
    pool.start()
    return pool
}()

/// Runs `body` with a thread pool of its own (`threads` threads), shut down afterwards: for stores
/// that stand for separate processes, which share no threads. On ``testStoreThreadPool`` a store
/// holding a file's write lock could wait for a thread while the others busy-waited for the lock
/// on theirs, beside the rest of a full suite.
public func withThreadPool<T>(threads: Int, _ body: (NIOThreadPool) async throws -> T) async throws -> T {
    let pool = NIOThreadPool(numberOfThreads: threads)
    pool.start()
    do {
        let result = try await body(pool)
        try await pool.shutdownGracefully()
        return result
    } catch {
        try? await pool.shutdownGracefully()
        throw error
    }
}

/// Runs `body` with a migrated SQLite store on a fresh file, removed afterwards.
public func withTemporarySQLiteStore(
    sessionOnFailure: SessionFailurePolicy = .continue, _ body: (SQLiteJobStore) async throws -> Void
) async throws {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("worker-sqlite-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: folder) }
    let store = try await SQLiteJobStore.open(
        path: folder.appendingPathComponent("jobs.sqlite").path, sessionOnFailure: sessionOnFailure, threadPool: testStoreThreadPool)
    do {
        try await store.migrate()
        try await body(store)
    } catch {
        try? await store.close()
        throw error
    }
    try await store.close()
}
