import Foundation
import Logging
import PostgresNIO
import WorkerCore

/// LISTEN/NOTIFY: wake-ups for new jobs and cancels, and for new job events.
extension PostgresJobStore {
    public func watch(queues: [String], onEvent: @escaping @Sendable (StoreEvent) -> Void) async throws {
        try await translatingErrors {
            if url.isTransactionPooler {
                logger.warning(
                    "DATABASE_URL points at a transaction pooler (port 6543): LISTEN/NOTIFY is unavailable there, so the worker polls (POLL_INTERVAL_MS); use the session pooler (port 5432) or a direct connection for instant pickup"
                )
                return
            }
            try await client.withConnection { connection in
                try await connection.listen(on: schema.channel) { notifications in
                    logger.debug("Listening for job notifications", metadata: ["channel": .string(schema.channel)])
                    // Jobs may have arrived while we were not listening.
                    onEvent(.jobsAvailable)
                    for try await notification in notifications {
                        if notification.payload.hasPrefix("cancel:"), let id = UUID(uuidString: String(notification.payload.dropFirst(7))) {
                            onEvent(.jobCancelled(id))
                        } else {
                            onEvent(.jobsAvailable)
                        }
                    }
                }
            }
            throw PostgresJobStoreError.notificationsEnded
        }
    }

    public func watchEvents(onJobs: @escaping @Sendable ([UUID]) -> Void) async throws {
        try await translatingErrors {
            // Behind a transaction pooler there is no LISTEN: readers poll.
            if url.isTransactionPooler { return }
            try await client.withConnection { connection in
                try await connection.listen(on: schema.eventsChannel) { notifications in
                    for try await notification in notifications {
                        onJobs(notification.payload.split(separator: ",").compactMap { UUID(uuidString: String($0)) })
                    }
                }
            }
            throw PostgresJobStoreError.notificationsEnded
        }
    }

    func notify(_ payload: String) async throws {
        _ = try await client.query("SELECT pg_notify(\(schema.channel), \(payload))", logger: logger).collect()
    }
}
