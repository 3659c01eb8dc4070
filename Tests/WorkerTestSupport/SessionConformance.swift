import Foundation
import Synchronization
import Testing
import WorkerCore

/// The session semantics every driver must have (docs/WORKER_SERVICE.md, "Sessions"): jobs with
/// one session id run one at a time, in enqueue order, whatever the writes in between.
extension JobStoreConformance {
    public static let sessionCases: [ConformanceCase] = [
        ConformanceCase(name: "a session's turns run one at a time, in enqueue order; jobs without a session are not held", body: sessionOrder),
        ConformanceCase(name: "many concurrent claimers never run two turns of one session, and start them in order", body: sessionExclusivity),
        ConformanceCase(name: "unrelated sessions run in parallel", body: sessionsInParallel),
        ConformanceCase(name: "priority orders sessions, not the turns inside one", body: sessionPriority),
        ConformanceCase(name: "a turn waiting for its retry holds its session", body: sessionRetryHolds),
        ConformanceCase(name: "a turn given back at shutdown runs before the next", body: sessionReleaseKeepsOrder),
        ConformanceCase(name: "rescue of a dead worker's turn keeps the order", body: sessionRescueKeepsOrder),
        ConformanceCase(name: "cancelling the running turn lets the next start once its command has stopped", body: sessionCancelRunning),
        ConformanceCase(name: "a cancelled turn whose worker died lets the next start when its lease runs out", body: sessionCancelledWorkerDied),
        ConformanceCase(name: "cancelling a waiting turn skips it", body: sessionCancelWaiting),
        ConformanceCase(name: "SESSION_ON_FAILURE=continue: a failed turn lets the next run", body: sessionFailureContinues),
        ConformanceCase(name: "SESSION_ON_FAILURE=block: later turns wait until the failed turn is retried or cancelled", sessionOnFailure: .block, body: sessionFailureBlocks),
        ConformanceCase(name: "SESSION_ON_FAILURE=block: a turn failed by the rescue holds its session too", sessionOnFailure: .block, body: sessionRescueFailureBlocks),
        ConformanceCase(name: "a retried earlier turn runs next, never beside the running one", body: sessionRetriedEarlierTurn),
        ConformanceCase(name: "a session's turns are listed in turn order; unfinished sessions are reported", body: sessionListing),
    ]

    static func claimAll(_ store: any JobStore, worker: String = worker, lease: Duration = .seconds(30)) async throws -> [ClaimedJob] {
        try await store.claim(queues: ["default"], limit: 100, workerID: worker, leaseDuration: lease)
    }

    static func complete(_ store: any JobStore, _ claimed: ClaimedJob) async throws {
        #expect(try await store.record([JobCompletion(lease: claimed.lease, outcome: .completed(result: "{}"))]) == [true])
    }

    // MARK: - Cases

    static func sessionOrder(_ store: any JobStore) async throws {
        let session = UUID()
        // One turn at a time and then a batch: the order is the enqueue order either way.
        let first = try await store.enqueue([NewJob(prompt: "t1", sessionID: session)])[0]
        let rest = try await store.enqueue([
            NewJob(prompt: "t2", sessionID: session), NewJob(prompt: "loose"), NewJob(prompt: "t3", sessionID: session),
        ])
        let waiting = try #require(try await store.job(id: rest[0]))
        #expect(waiting.status == .pending && waiting.heldBySession)
        #expect(try await store.job(id: first)?.heldBySession == false)
        #expect(try await store.job(id: rest[1])?.heldBySession == false)

        let batch = try await claimAll(store)
        #expect(Set(batch.map(\.job.prompt)) == ["t1", "loose"])
        for claimed in batch { try await complete(store, claimed) }
        var order: [String] = []
        for _ in 0..<2 {
            let next = try await claimAll(store)
            #expect(next.count == 1)
            order += next.map(\.job.prompt)
            for claimed in next { try await complete(store, claimed) }
        }
        #expect(order == ["t2", "t3"])
        #expect(try await claimAll(store).isEmpty)
    }

    static func sessionExclusivity(_ store: any JobStore) async throws {
        let sessions = (0..<12).map { _ in UUID() }
        let turns = 8
        // Turns enqueued round by round, each round one batch over all sessions.
        var expected: [UUID: [UUID]] = [:]
        for turn in 0..<turns {
            let ids = try await store.enqueue(sessions.map { NewJob(prompt: "turn \(turn)", sessionID: $0) })
            for (session, id) in zip(sessions, ids) { expected[session, default: []].append(id) }
        }
        let tracker = TurnTracker()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for claimer in 0..<6 {
                group.addTask {
                    var idle = 0
                    while idle < 20 {
                        let batch = try await store.claim(queues: ["default"], limit: 3, workerID: "claimer-\(claimer)", leaseDuration: .seconds(30))
                        if batch.isEmpty {
                            idle += 1
                            try await Task.sleep(for: .milliseconds(5))
                            continue
                        }
                        idle = 0
                        for claimed in batch { tracker.started(claimed.job) }
                        try await Task.sleep(for: .milliseconds(1))
                        for claimed in batch { tracker.ended(claimed.job) }
                        #expect(try await store.record(batch.map { JobCompletion(lease: $0.lease, outcome: .completed(result: "{}")) }) == batch.map { _ in true })
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(tracker.overlaps == 0, "two turns of one session were claimed at once")
        let order = tracker.order
        for session in sessions {
            #expect(order[session] == expected[session], "session \(session): turns started out of order")
        }
        let stats = try await store.stats()
        #expect(stats.completed == sessions.count * turns && stats.pending == 0)
    }

    static func sessionsInParallel(_ store: any JobStore) async throws {
        let sessions = (0..<3).map { _ in UUID() }
        for turn in 0..<3 {
            _ = try await store.enqueue(sessions.map { NewJob(prompt: "turn \(turn)", sessionID: $0) })
        }
        let batch = try await claimAll(store)
        #expect(batch.count == 3)
        #expect(Set(batch.compactMap(\.job.sessionID)) == Set(sessions))
        #expect(batch.allSatisfy { $0.job.prompt == "turn 0" })
    }

    static func sessionPriority(_ store: any JobStore) async throws {
        let a = UUID(), b = UUID()
        _ = try await store.enqueue([NewJob(prompt: "a1", sessionID: a, priority: 0)])
        _ = try await store.enqueue([NewJob(prompt: "a2", sessionID: a, priority: 10)])
        _ = try await store.enqueue([NewJob(prompt: "b1", sessionID: b, priority: 5)])
        // a2's priority does not let it pass a1; b1 goes before a1.
        let first = try await store.claim(queues: ["default"], limit: 1, workerID: worker, leaseDuration: .seconds(30))
        #expect(first.map(\.job.prompt) == ["b1"])
        let second = try await store.claim(queues: ["default"], limit: 5, workerID: worker, leaseDuration: .seconds(30))
        #expect(second.map(\.job.prompt) == ["a1"])
    }

    static func sessionRetryHolds(_ store: any JobStore) async throws {
        let session = UUID()
        let ids = try await store.enqueue([NewJob(prompt: "t1", sessionID: session), NewJob(prompt: "t2", sessionID: session)])
        let first = try await claimOne(store)
        #expect(first.job.id == ids[0])
        #expect(try await store.record([JobCompletion(lease: first.lease, outcome: .retry(error: "boom", delay: .seconds(2)))]) == [true])
        // t2 may not pass t1, which waits for its retry (on a slow machine t1 may be due already).
        var again = try await claimAll(store)
        #expect(!again.contains { $0.job.id == ids[1] })
        #expect(try await store.job(id: ids[1])?.heldBySession == true)
        let deadline = ContinuousClock.now + .seconds(15)
        while again.isEmpty, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
            again = try await claimAll(store)
        }
        let retried = try #require(again.first)
        #expect(again.map(\.job.id) == [ids[0]] && retried.lease.attempt == 2)
        try await complete(store, retried)
        #expect(try await claimAll(store).map(\.job.id) == [ids[1]])
    }

    static func sessionReleaseKeepsOrder(_ store: any JobStore) async throws {
        let session = UUID()
        let ids = try await store.enqueue([NewJob(prompt: "t1", sessionID: session), NewJob(prompt: "t2", sessionID: session)])
        let first = try await claimOne(store)
        #expect(try await store.record([JobCompletion(lease: first.lease, outcome: .released)]) == [true])
        let again = try await claimAll(store)
        #expect(again.map(\.job.id) == [ids[0]] && again.first?.lease.attempt == 1)
    }

    static func sessionRescueKeepsOrder(_ store: any JobStore) async throws {
        let session = UUID()
        let ids = try await store.enqueue([NewJob(prompt: "t1", sessionID: session), NewJob(prompt: "t2", sessionID: session)])
        _ = try await claimOne(store, worker: "dead-worker", lease: .milliseconds(50))
        try await Task.sleep(for: .milliseconds(150))
        #expect(try await claimAll(store).isEmpty, "t2 started while t1's lease was merely expired")
        let rescued = try await store.rescueExpiredLeases()
        #expect(rescued.map(\.id) == [ids[0]] && rescued.first?.sessionID == session)
        let again = try await claimAll(store)
        #expect(again.map(\.job.id) == [ids[0]] && again.first?.lease.attempt == 2)
    }

    static func sessionCancelRunning(_ store: any JobStore) async throws {
        let session = UUID()
        let ids = try await store.enqueue([NewJob(prompt: "t1", sessionID: session), NewJob(prompt: "t2", sessionID: session)])
        let first = try await claimOne(store)
        let cancelled = try await store.cancel(id: ids[0])
        #expect(cancelled.status == .cancelled)
        // The command is still being stopped: the session stays held, and its lease is renewed.
        #expect(try await claimAll(store).isEmpty)
        #expect(try await store.renew([first.lease], duration: .seconds(30))[ids[0]] == .cancelled)
        #expect(try await store.rescueExpiredLeases().isEmpty)
        #expect(try await claimAll(store).isEmpty)
        // Nor can it be retried while its command is being stopped: it would run beside it.
        await #expect(throws: JobStoreError.self) { _ = try await store.retry(id: ids[0]) }
        try await store.releaseCancelled([first.lease])
        let next = try await claimAll(store)
        #expect(next.map(\.job.id) == [ids[1]])
        let done = try #require(try await store.job(id: ids[0]))
        #expect(done.status == .cancelled && done.leaseExpiresAt == nil)
        // A stale lease changes nothing.
        try await store.releaseCancelled([first.lease])
        #expect(try await store.job(id: ids[1])?.status == .processing)
    }

    static func sessionCancelledWorkerDied(_ store: any JobStore) async throws {
        let session = UUID()
        let ids = try await store.enqueue([NewJob(prompt: "t1", sessionID: session), NewJob(prompt: "t2", sessionID: session)])
        _ = try await claimOne(store, worker: "dead-worker", lease: .milliseconds(300))
        _ = try await store.cancel(id: ids[0])
        #expect(try await claimAll(store).isEmpty)
        try await Task.sleep(for: .milliseconds(400))
        _ = try await store.rescueExpiredLeases()
        #expect(try await claimAll(store).map(\.job.id) == [ids[1]])
        #expect(try await store.job(id: ids[0])?.status == .cancelled)
    }

    static func sessionCancelWaiting(_ store: any JobStore) async throws {
        let session = UUID()
        let ids = try await store.enqueue((1...3).map { NewJob(prompt: "t\($0)", sessionID: session) })
        let first = try await claimOne(store)
        #expect(try await store.cancel(id: ids[1]).status == .cancelled)
        #expect(try await claimAll(store).isEmpty)
        try await complete(store, first)
        #expect(try await claimAll(store).map(\.job.id) == [ids[2]])
    }

    static func sessionFailureContinues(_ store: any JobStore) async throws {
        let session = UUID()
        let ids = try await store.enqueue([NewJob(prompt: "t1", sessionID: session), NewJob(prompt: "t2", sessionID: session)])
        let first = try await claimOne(store)
        #expect(try await store.record([JobCompletion(lease: first.lease, outcome: .failed(error: "boom"))]) == [true])
        #expect(try await store.job(id: ids[0])?.blocksSession == false)
        #expect(try await claimAll(store).map(\.job.id) == [ids[1]])
    }

    static func sessionFailureBlocks(_ store: any JobStore) async throws {
        let session = UUID()
        let ids = try await store.enqueue((1...3).map { NewJob(prompt: "t\($0)", sessionID: session) })
        let first = try await claimOne(store)
        #expect(try await store.record([JobCompletion(lease: first.lease, outcome: .failed(error: "boom"))]) == [true])
        let failed = try #require(try await store.job(id: ids[0]))
        #expect(failed.status == .failed && failed.blocksSession)
        #expect(try await claimAll(store).isEmpty)
        #expect(try await store.job(id: ids[1])?.heldBySession == true)
        // Retried: the failed turn runs again first, then the next.
        #expect(try await store.retry(id: ids[0]).status == .pending)
        let again = try await claimAll(store)
        #expect(again.map(\.job.id) == [ids[0]])
        let retried = try #require(again.first)
        #expect(try await store.record([JobCompletion(lease: retried.lease, outcome: .failed(error: "boom again"))]) == [true])
        #expect(try await claimAll(store).isEmpty)
        // Cancelled: the session goes on without it.
        let cancelled = try await store.cancel(id: ids[0])
        #expect(cancelled.status == .cancelled && !cancelled.blocksSession)
        let second = try await claimAll(store)
        #expect(second.map(\.job.id) == [ids[1]])
        // A failed job that holds no session cannot be cancelled.
        let loose = try await store.enqueue([NewJob(prompt: "loose")])[0]
        let claimed = try #require(try await claimAll(store).first { $0.job.id == loose })
        #expect(try await store.record([JobCompletion(lease: claimed.lease, outcome: .failed(error: "x"))]) == [true])
        await #expect(throws: JobStoreError.self) { _ = try await store.cancel(id: loose) }
    }

    static func sessionRescueFailureBlocks(_ store: any JobStore) async throws {
        let session = UUID()
        let ids = try await store.enqueue([NewJob(prompt: "t1", sessionID: session, maxAttempts: 1), NewJob(prompt: "t2", sessionID: session)])
        _ = try await claimOne(store, worker: "dead-worker", lease: .milliseconds(50))
        try await Task.sleep(for: .milliseconds(150))
        let rescued = try await store.rescueExpiredLeases()
        #expect(rescued.map(\.newStatus) == [.failed])
        #expect(try await store.job(id: ids[0])?.blocksSession == true)
        #expect(try await claimAll(store).isEmpty)
    }

    static func sessionRetriedEarlierTurn(_ store: any JobStore) async throws {
        let session = UUID()
        let ids = try await store.enqueue((1...3).map { NewJob(prompt: "t\($0)", sessionID: session) })
        let first = try await claimOne(store)
        #expect(try await store.record([JobCompletion(lease: first.lease, outcome: .failed(error: "boom"))]) == [true])
        let second = try await claimOne(store)
        #expect(second.job.id == ids[1])
        // The operator retries t1 while t2 runs: t1 waits, then runs before t3.
        #expect(try await store.retry(id: ids[0]).status == .pending)
        #expect(try await claimAll(store).isEmpty)
        try await complete(store, second)
        #expect(try await claimAll(store).map(\.job.id) == [ids[0]])
    }

    static func sessionListing(_ store: any JobStore) async throws {
        let busy = UUID(), done = UUID(), idle = UUID()
        let ids = try await store.enqueue((1...3).map { NewJob(prompt: "t\($0)", sessionID: busy) })
        _ = try await store.enqueue([NewJob(prompt: "other", sessionID: done)])
        let claimed = try await claimAll(store)
        for job in claimed where job.job.sessionID == done { try await complete(store, job) }
        let turns = try await store.jobs(matching: JobFilter(session: busy))
        #expect(turns.map(\.id) == ids)
        #expect(turns.map(\.status) == [.processing, .pending, .pending])
        #expect(turns.map(\.heldBySession) == [false, true, true])
        #expect(try await store.sessionsWithUnfinishedTurns(among: [busy, done, idle]) == [busy])
        #expect(try await store.sessionsWithUnfinishedTurns(among: []) == [])
    }
}

/// Which turns of which sessions run, as concurrent claimers report them.
final class TurnTracker: Sendable {
    private struct State {
        var running: Set<UUID> = []
        var order: [UUID: [UUID]] = [:]
        var overlaps = 0
    }
    private let state = Mutex(State())

    func started(_ job: Job) {
        guard let session = job.sessionID else { return }
        state.withLock { state in
            if !state.running.insert(session).inserted { state.overlaps += 1 }
            state.order[session, default: []].append(job.id)
        }
    }

    func ended(_ job: Job) {
        guard let session = job.sessionID else { return }
        _ = state.withLock { $0.running.remove(session) }
    }

    var overlaps: Int { state.withLock { $0.overlaps } }
    var order: [UUID: [UUID]] { state.withLock { $0.order } }
}
