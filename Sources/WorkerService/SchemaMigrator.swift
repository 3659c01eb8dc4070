import Logging
import ServiceLifecycle
import WorkerCore

/// Applies the schema migration when the worker starts, waiting with backoff while the
/// database is unreachable, then opens the gate the processor and monitor wait behind.
/// The health server runs meanwhile, so an orchestrator sees a live (not ready) worker.
struct SchemaMigrator: Service {
    let store: any JobStore
    let enabled: Bool
    let gate: StartupGate
    let logger: Logger

    func run() async throws {
        guard enabled else {
            gate.open()
            return
        }
        try await cancelWhenGracefulShutdown {
            var failures = 0
            while !Task.isCancelled {
                do {
                    try await withTimeout(.seconds(6), operation: "the database") { try await store.migrate() }
                    if failures > 0 { logger.info("Database is reachable again") }
                    gate.open()
                    return
                } catch let error as JobStoreError {
                    // Not an outage: a schema this worker cannot use.
                    throw error
                } catch {
                    failures += 1
                    let delay = min(Duration.milliseconds(500) * (1 << min(failures - 1, 6)), .seconds(30))
                    logger.error(
                        "Database unreachable at start-up, retrying",
                        metadata: ["error": "\(error)", "attempt": .stringConvertible(failures), "retryInMs": .stringConvertible(delay.inMilliseconds)]
                    )
                    // Shutdown ends the wait: return quietly, nothing was claimed.
                    do { try await Task.sleep(for: delay) } catch { return }
                }
            }
        }
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
