import Foundation
import Logging
import PostgresNIO
import WorkerCore

/// LISTEN/NOTIFY: wake-ups for new jobs and cancels, and for new job events.
extension PostgresJobStore {
    public func watch(queues: [String], onEvent: @escaping @Sendable (StoreEvent) -> Void) async throws {
        try await translatingErrors {
            if let sign = url.transactionPoolerSign {
                logger.warning(
                    "DATABASE_URL points at a transaction pooler (\(sign)): LISTEN/NOTIFY is unavailable there, so the worker polls (POLL_INTERVAL_MS); use the session pooler (port 5432) or a direct connection for instant pickup"
                )
                return
            }
            let (logger, channel) = (logger, schema.channel)
            try await listen(on: channel) {
                logger.debug("Listening for job notifications", metadata: ["channel": .string(channel)])
                // Jobs may have arrived while we were not listening.
                onEvent(.jobsAvailable)
            } onNotification: { payload in
                if payload.hasPrefix("cancel:"), let id = UUID(uuidString: String(payload.dropFirst(7))) {
                    onEvent(.jobCancelled(id))
                } else {
                    onEvent(.jobsAvailable)
                }
            }
        }
    }

    public func watchEvents(onJobs: @escaping @Sendable ([UUID]) -> Void) async throws {
        try await translatingErrors {
            // Behind a transaction pooler there is no LISTEN: readers poll.
            if url.isTransactionPooler { return }
            try await listen(on: schema.eventsChannel) {} onNotification: { payload in
                onJobs(payload.split(separator: ",").compactMap { UUID(uuidString: String($0)) })
            }
        }
    }

    /// LISTENs on `channel` on a connection of its own until that connection fails, then throws.
    ///
    /// A LISTEN connection only receives, so a connection that died silently (a NAT or load
    /// balancer that dropped the idle flow, a failover that moved the server's address: no
    /// reset ever arrives) looked alive for good, and the worker fell back to polling without a
    /// word. Every ``notificationHeartbeat`` the connection is asked a `SELECT`; one that does
    /// not answer within another heartbeat is closed and the error says so, so the caller
    /// listens again on a new connection. (The pool's own keep-alive skips it: it is leased for
    /// as long as it listens.) The query also keeps such idle flows from being dropped at all.
    ///
    /// The heartbeat starts with the `LISTEN` itself, which a dead connection leaves unanswered too.
    func listen(
        on channel: String, onListening: @escaping @Sendable () -> Void, onNotification: @escaping @Sendable (String) -> Void
    ) async throws {
        let heartbeat = notificationHeartbeat
        let logger = logger
        try await client.withConnection { connection in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    try await connection.listen(on: channel) { notifications in
                        onListening()
                        for try await notification in notifications { onNotification(notification.payload) }
                    }
                    throw PostgresJobStoreError.notificationsEnded
                }
                group.addTask {
                    while true {
                        try await Task.sleep(for: heartbeat)
                        do {
                            try await withTimeout(heartbeat, operation: "notification heartbeat") {
                                _ = try await connection.query("SELECT 1 AS listen_heartbeat", logger: logger).collect()
                            }
                        } catch let error as TimeoutError {
                            throw PostgresJobStoreError.notificationsStalled(error.timeout)
                        }
                    }
                }
                // Whichever ends first (the notifications with the connection, or a heartbeat
                // without an answer) ends both.
                do {
                    try await group.next()
                } catch {
                    group.cancelAll()
                    // Closed, so that the pool does not lend it again and the heartbeat's
                    // query, still waiting, ends.
                    if case PostgresJobStoreError.notificationsStalled = error { try? await connection.close() }
                    throw error
                }
            }
        }
        throw PostgresJobStoreError.notificationsEnded
    }

    func notify(_ payload: String) async throws {
        _ = try await client.query("SELECT pg_notify(\(schema.channel), \(payload))", logger: logger).collect()
    }
}
