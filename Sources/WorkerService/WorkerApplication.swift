import Foundation
import Logging
import ServiceLifecycle
import UnixSignals
import WorkerCore

/// The worker service: the store, the job processor, the queue monitor and the health
/// server, run as one swift-service-lifecycle `ServiceGroup`.
///
/// Shutdown: the first SIGTERM or SIGINT logs "Received shutdown signal" and shuts the group
/// down gracefully, in reverse order of start: the monitor, then the processor (which waits up
/// to `SHUTDOWN_TIMEOUT_MS` for running jobs and gives back the rest), then the health server.
/// A second signal skips the processor's wait.
public struct WorkerApplication: Sendable {
    public let configuration: WorkerConfiguration
    private let logger: Logger

    public init(configuration: WorkerConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// Runs until a shutdown signal, then returns after a clean stop.
    public func run() async throws {
        try configuration.validateForRun()
        logger.info(
            "Worker service starting",
            metadata: ["env": .string(configuration.environment.rawValue), "workerId": .string(configuration.workerID)]
        )
        logger.info("Effective configuration", metadata: .init(uniqueKeysWithValues: configuration.redactedSummary.map { ($0.name, .string($0.value)) }))
        if configuration.handler == nil {
            logger.warning("JOB_HANDLER is not set: using the echo handler, which only echoes prompts (development only)")
        }
        try Socket.ensureAvailable(host: configuration.healthCheckHost, port: configuration.healthCheckPort)

        let connection = try await JobStoreConnector.open(configuration.store, logger: logger)
        let store = connection.store
        let processor = JobProcessor(
            store: store,
            handler: makeHandler(),
            configuration: configuration.processorConfiguration,
            logger: logger
        )
        let monitor = QueueMonitor(store: store, interval: configuration.monitorInterval, logger: logger)
        let health = HealthServer(
            host: configuration.healthCheckHost,
            port: configuration.healthCheckPort,
            logger: logger,
            readiness: { await Self.readiness(store: store, processor: processor) }
        )
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let storeService = connection.service { services.append(.init(service: storeService, serviceName: "store")) }
        services += [
            .init(service: health, serviceName: "health-server"),
            .init(service: processor, serviceName: "job-processor"),
            .init(service: monitor, serviceName: "queue-monitor"),
        ]
        var groupConfiguration = ServiceGroupConfiguration(services: services, logger: logger)
        groupConfiguration.maximumGracefulShutdownDuration = configuration.shutdownTimeout + .seconds(15)
        let group = ServiceGroup(configuration: groupConfiguration)

        logger.info("Worker service ready")
        do {
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                tasks.addTask { await handleSignals(group: group, processor: processor) }
                // The group ends first (after a shutdown or a failure); then stop watching signals.
                try await tasks.next()
                tasks.cancelAll()
            }
        } catch {
            try? await store.close()
            throw error
        }
        try await store.close()
        logger.info("Worker service stopped cleanly")
    }

    private func makeHandler() -> any JobHandler {
        switch configuration.handler {
        case .echo, nil: EchoHandler()
        }
    }

    private func handleSignals(group: ServiceGroup, processor: JobProcessor) async {
        let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint)
        var received = 0
        for await signal in signals {
            received += 1
            if received == 1 {
                logger.info("Received shutdown signal", metadata: ["signal": .string(signal.description)])
                await group.triggerGracefulShutdown()
            } else {
                logger.warning("Received second shutdown signal: giving running jobs back now", metadata: ["signal": .string(signal.description)])
                processor.skipShutdownWait()
            }
        }
    }

    /// The `/ready` checks: `nil` means passing.
    static func readiness(store: any JobStore, processor: JobProcessor) async -> [String: String?] {
        var checks: [String: String?] = [:]
        checks["processor"] = processor.isClaiming ? String?.none : "not claiming (starting or shutting down)"
        checks["store"] = await withTaskGroup(of: String?.self) { group -> String? in
            group.addTask {
                do {
                    try await store.ping()
                    return nil
                } catch {
                    return "\(error)"
                }
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(1))
                return Task.isCancelled ? nil : "no answer within 1 s"
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        return checks
    }
}
