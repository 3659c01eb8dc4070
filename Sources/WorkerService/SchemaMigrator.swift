import Logging
import ServiceLifecycle
import WorkerCore
import WorkerPostgres

/// Applies the schema migration when the worker starts (or, with `AUTO_MIGRATE=false`, checks
/// that the schema is there and current), waiting with backoff while the database is
/// unreachable, then opens the gate the processor and monitor wait behind and logs that the
/// worker is ready. The health server runs meanwhile, so an orchestrator sees a live (not
/// ready) worker.
///
/// A schema this worker cannot use, or a role without a privilege it needs, is not an outage:
/// start-up fails at once with the store's message (exit 1) instead of retrying forever.
struct SchemaMigrator: Service {
    let store: any JobStore
    let enabled: Bool
    /// With `SUPABASE_RLS=true`: the most pending jobs a user may have and the queues users may
    /// name; the migration then also applies row-level security and the app's functions.
    var supabase: (maximumPendingJobsPerUser: Int, userQueues: [String])? = nil
    let gate: StartupGate
    let logger: Logger

    func run() async throws {
        try await cancelWhenGracefulShutdown {
            var failures = 0
            while !Task.isCancelled {
                // Whether the database answered this round: its refusal of the migration itself
                // is then not an outage.
                var reached = false
                do {
                    // Reachable first, within a bound; then the migration as long as it takes: it
                    // may wait for the migration lock while other workers migrate (a burst of them
                    // takes longer than any fixed bound), and an attempt given up on would lose
                    // its place and roll back, again and again.
                    try await withTimeout(.seconds(6), operation: "the database") { [store] in try await store.ping() }
                    reached = true
                    try await whileReportingSlowness {
                        if enabled, let supabase, let postgres = store as? PostgresJobStore {
                            try await postgres.secureForSupabase(
                                maximumPendingJobsPerUser: supabase.maximumPendingJobsPerUser, userQueues: supabase.userQueues)
                        } else if enabled {
                            try await store.migrate()
                        } else {
                            try await store.verifySchema()
                        }
                    }
                    if failures > 0 { logger.info("Database is reachable again") }
                    gate.open()
                    logger.info("Worker service ready")
                    return
                } catch let error as JobStoreError {
                    // Not an outage: a schema this worker cannot use, or a missing privilege.
                    throw error
                } catch let error as PostgresJobStoreError where reached && error.isLastingRefusal {
                    // Nor is a statement of the migration refused for what it is (a function of
                    // that name returning another type, a view on a column it changes): retried,
                    // it was "Database unreachable" forever, and the worker never ready.
                    throw WorkerServiceError.migrationRefused(error.description)
                } catch {
                    failures += 1
                    let delay = min(Duration.milliseconds(500) * (1 << min(failures - 1, 6)), .seconds(30))
                    var metadata: Logger.Metadata = [
                        "error": "\(await cause(of: error))", "attempt": .stringConvertible(failures),
                        "retryInMs": .stringConvertible(delay.inMilliseconds),
                    ]
                    if let postgres = store as? PostgresJobStore {
                        metadata["host"] = .string(postgres.url.host)
                        metadata["port"] = .stringConvertible(postgres.url.port)
                    }
                    logger.error("Database unreachable at start-up, retrying", metadata: metadata)
                    // Shutdown ends the wait: return quietly, nothing was claimed.
                    do { try await Task.sleep(for: delay) } catch { return }
                }
            }
        }
    }

    /// Runs `body`, logging every 10 s that it still waits (a migration waits for other workers'
    /// migrations, or for locks on the jobs table).
    private func whileReportingSlowness(_ body: @escaping @Sendable () async throws -> Void) async throws {
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await body() }
            tasks.addTask { [logger] in
                var waited = Duration.zero
                while true {
                    try await Task.sleep(for: .seconds(10))
                    waited += .seconds(10)
                    logger.warning(
                        "The schema migration is still waiting (another worker may be migrating, or a lock is held on the jobs table)",
                        metadata: ["waitedMs": .stringConvertible(waited.inMilliseconds)]
                    )
                }
            }
            // The first to end is the body (the reporter only ends by cancellation or with it).
            defer { tasks.cancelAll() }
            try await tasks.next()
        }
    }

    /// What to tell the operator about `error`. A call that waited for PostgreSQL's connection
    /// pool only knows that it timed out (the pool retries connecting quietly); one direct
    /// connection attempt then names the real cause (refused, unknown host, authentication, TLS).
    private func cause(of error: any Error) async -> String {
        guard error is TimeoutError, let postgres = store as? PostgresJobStore else { return "\(error)" }
        return await postgres.connectionProblem() ?? "\(error)"
    }
}

/// Runs a service once the start-up gate opens; returns quietly if shutdown comes first.
struct GatedService: Service {
    let service: any Service
    let gate: StartupGate

    func run() async throws {
        let opened = await cancelWhenGracefulShutdown { await gate.wait() }
        guard opened, !Task.isShuttingDownGracefully else { return }
        try await service.run()
    }
}
