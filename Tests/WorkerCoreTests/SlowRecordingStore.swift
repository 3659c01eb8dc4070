import Foundation
import WorkerCore

/// A real store whose outcome writes take `delay` longer, as on a slow or distant database.
/// Everything else goes straight through.
final class SlowRecordingStore: JobStore {
    let base: any JobStore
    let delay: Duration

    init(_ base: any JobStore, delay: Duration) {
        self.base = base
        self.delay = delay
    }

    func record(_ completions: [JobCompletion]) async throws -> [Bool] {
        try await Task.sleep(for: delay)
        return try await base.record(completions)
    }

    func migrate() async throws { try await base.migrate() }
    func enqueue(_ jobs: [NewJob]) async throws -> [UUID] { try await base.enqueue(jobs) }
    func claim(queues: [String], limit: Int, workerID: String, leaseDuration: Duration) async throws -> [ClaimedJob] {
        try await base.claim(queues: queues, limit: limit, workerID: workerID, leaseDuration: leaseDuration)
    }
    func renew(_ leases: [Lease], duration: Duration) async throws -> [UUID: LeaseState] { try await base.renew(leases, duration: duration) }
    func rescueExpiredLeases() async throws -> [RescuedJob] { try await base.rescueExpiredLeases() }
    func job(id: UUID) async throws -> Job? { try await base.job(id: id) }
    func jobs(matching filter: JobFilter) async throws -> [Job] { try await base.jobs(matching: filter) }
    func cancel(id: UUID) async throws -> Job { try await base.cancel(id: id) }
    func retry(id: UUID) async throws -> Job { try await base.retry(id: id) }
    func stats(window: Duration?) async throws -> QueueStats { try await base.stats(window: window) }
    func deleteFinished(status: JobStatus, olderThan: Duration, limit: Int) async throws -> Int? {
        try await base.deleteFinished(status: status, olderThan: olderThan, limit: limit)
    }
    func ping() async throws { try await base.ping() }
    func watch(queues: [String], onEvent: @escaping @Sendable (StoreEvent) -> Void) async throws {
        try await base.watch(queues: queues, onEvent: onEvent)
    }
    func dropTable() async throws { try await base.dropTable() }
    func settle() async throws { try await base.settle() }
    func close() async throws { try await base.close() }
}
