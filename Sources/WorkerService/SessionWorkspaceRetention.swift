import Logging
import ServiceLifecycle
import WorkerCore
import WorkerExecution

/// Runs the ``SessionWorkspaceSweeper`` every `interval` while the worker runs
/// (`JOB_WORKSPACE=session` with a `WORKSPACE_RETENTION_HOURS` other than 0).
///
/// Every worker runs one; the sweeper's own lock lets one of them sweep at a time.
struct SessionWorkspaceRetention: Service {
    let sweeper: SessionWorkspaceSweeper
    var interval: Duration = .seconds(600)
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            // Start after a random part of the interval, so workers started together do not sweep together.
            try? await Task.sleep(for: interval * Double.random(in: 0.1...1))
            while !Task.isCancelled {
                do {
                    let report = try await sweeper.sweep()
                    if !report.keptLocked.isEmpty {
                        logger.debug("Kept idle session workspaces whose lock is held", metadata: [
                            "sessions": .array(report.keptLocked.map { .string($0.lowercasedText) }),
                        ])
                    }
                } catch {
                    logger.warning("Could not sweep idle session workspaces; trying again next round", metadata: ["error": "\(error)"])
                }
                do { try await Task.sleep(for: interval) } catch { return }
            }
        }
    }
}
