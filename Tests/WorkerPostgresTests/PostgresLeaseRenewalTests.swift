import Foundation
import Logging
import PostgresNIO
import Synchronization
import Testing
import WorkerCore
@testable import WorkerPostgres

/// Lease renewals on a connection of their own (``PostgresJobStore/leaseClient``).
@Suite("PostgreSQL: lease renewals", .enabled(if: TestDatabase.isAvailable, "needs TEST_DATABASE_URL: run scripts/test"))
struct PostgresLeaseRenewalTests {
    final class Flag: Sendable {
        private let value = Atomic<Bool>(false)
        func set() { value.store(true, ordering: .sequentiallyConsistent) }
        var isSet: Bool { value.load(ordering: .sequentiallyConsistent) }
    }

    @Test("a row another transaction holds locked does not hold up the worker's other renewals: they are renewed, it is reported held and renewed once free")
    func lockedRowDoesNotHoldUpTheOthers() async throws {
        try await TestDatabase.withStore { store in
            _ = try await store.enqueue([NewJob(prompt: "locked"), NewJob(prompt: "free")])
            let leases = try await store.claim(queues: ["default"], limit: 2, workerID: "w", leaseDuration: .seconds(30)).map(\.lease)
            try #require(leases.count == 2)
            let (locked, free) = (leases[0], leases[1])
            let expiry = { (id: UUID) async throws -> Double in
                try #require(try await TestDatabase.execute(
                    "SELECT extract(epoch FROM lease_expires_at)::float8 FROM \(store.schema.table) WHERE id = '\(id)'", on: store).first?.decode(Double.self))
            }
            let (lockedBefore, freeBefore) = (try await expiry(locked.jobID), try await expiry(free.jobID))
            let released = Flag()
            let logger = Logger(label: "test")
            try await withThrowingTaskGroup(of: Void.self) { group in
                let (held, holding) = AsyncStream<Void>.makeStream()
                // A producer's transaction holding the row (as the insert of a session's next turn
                // locks the session's running turn until it commits).
                group.addTask {
                    try await store.client.withTransaction(logger: logger) { connection in
                        _ = try await connection.query(PostgresQuery(unsafeSQL: "SELECT 1 FROM \(store.schema.table) WHERE id = '\(locked.jobID)' FOR UPDATE"), logger: logger)
                        holding.yield()
                        _ = try await connection.query("SELECT pg_sleep(4)", logger: logger)
                        released.set()
                    }
                }
                for await _ in held { break }
                try await Task.sleep(for: .milliseconds(20))
                let states = try await store.renew(leases, duration: .seconds(60))
                // Before, the renewal waited for the lock (here 4 s; in production, up to the statement bound, then renewed nothing).
                #expect(!released.isSet, "the renewal waited for the locked row")
                #expect(states == [locked.jobID: .held, free.jobID: .held])
                #expect(try await expiry(free.jobID) > freeBefore + 20, "the free row's lease was renewed")
                #expect(try await expiry(locked.jobID) == lockedBefore, "the locked row's lease is left to the next renewal")
                try await group.waitForAll()
            }
            #expect(try await store.renew([locked], duration: .seconds(60)) == [locked.jobID: .held])
            #expect(try await expiry(locked.jobID) > lockedBefore + 20)
        }
    }

    @Test("a job whose events are being written (their batch key-share-locks the job until it commits) has its lease renewed, not skipped as locked")
    func renewalBesideEventWrites() async throws {
        try await TestDatabase.withStore { store in
            _ = try await store.enqueue([NewJob(prompt: "printing")])
            let lease = try #require(try await store.claim(queues: ["default"], limit: 1, workerID: "w", leaseDuration: .seconds(30)).first).lease
            let expiry = { () async throws -> Double in
                try #require(try await TestDatabase.execute(
                    "SELECT extract(epoch FROM lease_expires_at)::float8 FROM \(store.schema.table) WHERE id = '\(lease.jobID)'", on: store).first?.decode(Double.self))
            }
            let before = try await expiry()
            let logger = Logger(label: "test")
            // The lock a batch of events holds (and the events' foreign key takes), held while the
            // renewal runs: a job that prints without pause has one nearly all the time.
            let states = try await store.client.withTransaction(logger: logger) { connection in
                _ = try await connection.query(PostgresQuery(unsafeSQL: "SELECT 1 FROM \(store.schema.table) WHERE id = '\(lease.jobID)' FOR KEY SHARE"), logger: logger)
                return try await store.renew([lease], duration: .seconds(60))
            }
            #expect(states == [lease.jobID: .held])
            // Before: skipped as locked at every try, reported held, and not renewed.
            #expect(try await expiry() > before + 20, "the lease was renewed")
        }
    }

    @Test("a renewal does not wait for the pool: with every pooled connection busy, the lease is renewed before any is free")
    func renewalWhilePoolIsBusy() async throws {
        try await TestDatabase.withStore(maximumConnections: 2) { store in
            _ = try await store.enqueue([NewJob(prompt: "long")])
            let lease = try #require(try await store.claim(queues: ["default"], limit: 1, workerID: "w", leaseDuration: .seconds(30)).first).lease
            let released = Flag()
            let logger = Logger(label: "test")
            try await withThrowingTaskGroup(of: Void.self) { group in
                let (busy, connectionTaken) = AsyncStream<Void>.makeStream()
                // Both of the pool's connections held, as a burst of API requests or slow
                // statements holds them.
                for _ in 0..<2 {
                    group.addTask {
                        try await store.client.withConnection { connection in
                            connectionTaken.yield()
                            _ = try await connection.query("SELECT pg_sleep(4)", logger: logger)
                            released.set()
                        }
                    }
                }
                var taken = 0
                for await _ in busy {
                    taken += 1
                    if taken == 2 { break }
                }
                #expect(try await store.renew([lease], duration: .seconds(30)) == [lease.jobID: .held])
                // Before, the renewal waited in the pool until a connection came back.
                #expect(!released.isSet, "renewed only once a pooled connection was free")
                try await group.waitForAll()
            }
        }
    }
}
