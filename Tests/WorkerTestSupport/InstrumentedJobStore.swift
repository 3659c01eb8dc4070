import Foundation
import WorkerCore

/// A real store with hooks on its claims, outcome writes, lease renewals and pings, for tests that
/// watch or slow them (a slow database, counting claims or readiness probes). Everything else goes
/// straight through.
public final class InstrumentedJobStore: JobStore {
    public let base: any JobStore
    private let beforeClaim: @Sendable () async throws -> Void
    private let afterClaim: @Sendable (_ claimed: [ClaimedJob]) -> Void
    private let beforeRecord: @Sendable () async throws -> Void
    private let beforeRenew: @Sendable () async throws -> Void
    private let aroundPing: @Sendable (_ ping: @Sendable () async throws -> Void) async throws -> Void
    private let afterUnfinishedTurns: @Sendable (_ sessions: [UUID], _ unfinished: Set<UUID>) async throws -> Void
    private let beforeJob: @Sendable () async throws -> Void
    private let beforeDeleteFinished: @Sendable (_ limit: Int) async throws -> Void

    /// - Parameter aroundPing: runs each ping; it calls `ping` (or not) and may wait or count around it.
    public init(
        _ base: any JobStore,
        beforeClaim: @escaping @Sendable () async throws -> Void = {},
        afterClaim: @escaping @Sendable (_ claimed: [ClaimedJob]) -> Void = { _ in },
        beforeRecord: @escaping @Sendable () async throws -> Void = {},
        beforeRenew: @escaping @Sendable () async throws -> Void = {},
        aroundPing: @escaping @Sendable (_ ping: @Sendable () async throws -> Void) async throws -> Void = { try await $0() },
        afterUnfinishedTurns: @escaping @Sendable (_ sessions: [UUID], _ unfinished: Set<UUID>) async throws -> Void = { _, _ in },
        beforeJob: @escaping @Sendable () async throws -> Void = {},
        beforeDeleteFinished: @escaping @Sendable (_ limit: Int) async throws -> Void = { _ in }
    ) {
        self.beforeDeleteFinished = beforeDeleteFinished
        self.base = base
        self.beforeClaim = beforeClaim
        self.afterClaim = afterClaim
        self.beforeRecord = beforeRecord
        self.beforeRenew = beforeRenew
        self.aroundPing = aroundPing
        self.afterUnfinishedTurns = afterUnfinishedTurns
        self.beforeJob = beforeJob
    }

    public func claim(queues: [String], limit: Int, workerID: String, leaseDuration: Duration) async throws -> [ClaimedJob] {
        try await beforeClaim()
        let claimed = try await base.claim(queues: queues, limit: limit, workerID: workerID, leaseDuration: leaseDuration)
        afterClaim(claimed)
        return claimed
    }

    public func record(_ completions: [JobCompletion]) async throws -> [Bool] {
        try await beforeRecord()
        return try await base.record(completions)
    }

    public func migrate() async throws { try await base.migrate() }
    public func verifySchema() async throws { try await base.verifySchema() }
    public func enqueue(_ jobs: [NewJob]) async throws -> [UUID] { try await base.enqueue(jobs) }
    public func renew(_ leases: [Lease], duration: Duration) async throws -> [UUID: LeaseState] {
        try await beforeRenew()
        return try await base.renew(leases, duration: duration)
    }
    public func rescueExpiredLeases(sparing running: [UUID]) async throws -> [RescuedJob] {
        try await base.rescueExpiredLeases(sparing: running)
    }
    public func releaseCancelled(_ leases: [Lease]) async throws { try await base.releaseCancelled(leases) }
    public func appendEvents(_ events: [NewJobEvent]) async throws -> RefusedEvents { try await base.appendEvents(events) }
    public func events(jobID: UUID, after: Int64, limit: Int, maxBytes: Int) async throws -> [JobEvent] {
        try await base.events(jobID: jobID, after: after, limit: limit, maxBytes: maxBytes)
    }
    public func watchEvents(onJobs: @escaping @Sendable ([UUID]) -> Void) async throws { try await base.watchEvents(onJobs: onJobs) }
    public func job(id: UUID) async throws -> Job? {
        try await beforeJob()
        return try await base.job(id: id)
    }
    public func jobs(matching filter: JobFilter) async throws -> [Job] { try await base.jobs(matching: filter) }
    public func sessionsWithUnfinishedTurns(among sessions: [UUID]) async throws -> Set<UUID> {
        let unfinished = try await base.sessionsWithUnfinishedTurns(among: sessions)
        try await afterUnfinishedTurns(sessions, unfinished)
        return unfinished
    }
    public func cancel(id: UUID) async throws -> Job { try await base.cancel(id: id) }
    public func retry(id: UUID) async throws -> Job { try await base.retry(id: id) }
    public func stats(window: Duration?) async throws -> QueueStats { try await base.stats(window: window) }
    public func runningJobsByWorker() async throws -> [String: Int] { try await base.runningJobsByWorker() }
    public func finishedTimeline(window: Duration, interval: Duration) async throws -> [FinishedInterval] {
        try await base.finishedTimeline(window: window, interval: interval)
    }
    public func deleteFinished(status: JobStatus, olderThan: Duration, limit: Int) async throws -> Int? {
        try await beforeDeleteFinished(limit)
        return try await base.deleteFinished(status: status, olderThan: olderThan, limit: limit)
    }
    public func ping() async throws { try await aroundPing { [base] in try await base.ping() } }
    public func watch(queues: [String], onEvent: @escaping @Sendable (StoreEvent) -> Void) async throws {
        try await base.watch(queues: queues, onEvent: onEvent)
    }
    public func close() async throws { try await base.close() }
}
