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
