import CProcessControl
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals
import WorkerCore
import WorkerDashboard
import WorkerExecution

/// The worker service: the store, the job processor, the queue monitor and the health
/// server, run as one swift-service-lifecycle `ServiceGroup`.
///
/// Shutdown: the first SIGTERM, SIGINT or SIGHUP logs "Received shutdown signal" and shuts the group
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
        // The worker's memory and environment hold its secrets (DATABASE_URL, API_TOKEN): no
        // process of the same user, a job's command included, may read /proc/<pid>/environ or
        // ptrace it, and no core dump writes them out.
        if mobvibe_set_undumpable() != 0 {
            logger.warning("Could not make the worker non-dumpable: a command running as its user could read its environment", metadata: [
                "errno": .stringConvertible(errno),
            ])
        }
        logger.info(
            "Worker service starting",
            metadata: ["env": .string(configuration.environment.rawValue), "workerId": .string(configuration.workerID)]
        )
        logger.info("Effective configuration", metadata: .init(uniqueKeysWithValues: configuration.redactedSummary.map { ($0.name, .string($0.value)) }))
        if configuration.handler == nil {
            logger.warning("JOB_HANDLER is not set: using the echo handler, which only echoes prompts (development only)")
        }
        for warning in configuration.startupWarnings { logger.warning("\(warning)") }
        try Socket.ensureAvailable(host: configuration.healthCheckHost, port: configuration.healthCheckPort)
        var sandbox: JobSandbox?
        var limits = JobLimitEnforcement.none
        var launcher: JobLauncher?
        if configuration.handler == .command, let command = configuration.command {
            let setup = try await CommandExecutionSetup.prepare(configuration, command: command)
            (sandbox, limits, launcher) = (setup.sandbox, setup.limits, setup.launcher)
            for note in setup.notes { logger.log(level: note.level, "\(note.message)") }
        }

        let shutdown = ShutdownCoordinator(logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { await shutdown.handleSignals() }
            defer { tasks.cancelAll() }
            try await JobStoreConnector.withStore(configuration, logger: logger) { store in
                try await runServices(store: store, shutdown: shutdown, sandbox: sandbox, limits: limits, launcher: launcher)
            }
        }
        logger.info("Worker service stopped cleanly")
    }

    private func runServices(store: any JobStore, shutdown: ShutdownCoordinator, sandbox: JobSandbox?, limits: JobLimitEnforcement, launcher: JobLauncher?) async throws {
        let registry = MetricsSetup.registry
        let processor = JobProcessor(
            store: store,
            handler: makeHandler(sandbox: sandbox, limits: limits, launcher: launcher),
            configuration: configuration.processorConfiguration,
            logger: logger
        )
        let monitor = QueueMonitor(
            store: store, interval: configuration.monitorInterval, servedQueues: configuration.processorConfiguration.queues, logger: logger)
        let feed = JobEventFeed(store: store, logger: logger)
        let loopback = LoopbackAccess(refusal: Self.commandsShareNetwork(configuration, sandboxed: sandbox != nil))
        if configuration.apiToken == nil {
            if let refusal = loopback.refusal {
                logger.warning("API_TOKEN is unset and \(refusal): the job API (/jobs) and the dashboard refuse every request until API_TOKEN is set")
            } else {
                logger.info("API_TOKEN is unset: the job API (/jobs) answers only on this machine (loopback)")
            }
        }
        let users = try await configuration.userTokenVerifier()
        if let users {
            logger.info("Users' access tokens are accepted on GET /jobs/{id} and /jobs/{id}/events: each user reads only their own jobs", metadata: [
                "audience": .string(users.audience),
                "keys": .string([configuration.supabaseJWTSecret.map { _ in "SUPABASE_JWT_SECRET (HS256)" }, configuration.supabaseJWKSFile.map { "JWKS \($0)" }, configuration.supabaseJWKSURL.map { "JWKS \($0)" }]
                    .compactMap { $0 }.joined(separator: ", ")),
            ])
        }
        let jobAPI = JobAPI(
            store: store, feed: feed, token: configuration.apiToken, loopback: loopback, users: users,
            defaultMaxAttempts: configuration.jobMaxAttempts, logger: logger,
            enqueued: { [processor] in processor.notifyJobsAvailable() })
        let health = HealthServer(
            host: configuration.healthCheckHost,
            port: configuration.healthCheckPort,
            logger: logger,
            readiness: ReadinessProbe(checks: [.store(store), .processor(processor), .outcomes(processor), .events(processor), .leases(processor)], logger: logger),
            metrics: { [registry] in registry.emitToBuffer() },
            jobAPI: jobAPI,
            dashboard: try Dashboard(
                store: store, token: configuration.apiToken, loopback: loopback, allowsActions: true, eventStream: jobAPI.eventStream, logger: logger)
        )
        let gate = StartupGate()
        let migrator = SchemaMigrator(
            store: store, enabled: configuration.autoMigrate,
            supabase: configuration.supabaseRLS ? (configuration.maxPendingJobsPerUser, configuration.supabaseUserQueues) : nil, gate: gate,
            logger: logger)
        // Shut down in reverse: the monitor, then the processor (draining jobs), then the health server.
        var groupConfiguration = ServiceGroupConfiguration(
            services: [
                .init(service: health, serviceName: "health-server"),
                .init(service: feed, successTerminationBehavior: .ignore, serviceName: "job-event-feed"),
                .init(service: migrator, successTerminationBehavior: .ignore, serviceName: "schema-migrator"),
                .init(service: GatedService(service: processor, gate: gate), serviceName: "job-processor"),
                .init(service: GatedService(service: monitor, gate: gate), serviceName: "queue-monitor"),
                .init(
                    service: GatedService(service: RetentionSweeper(store: store, policy: configuration.retention, logger: logger), gate: gate),
                    successTerminationBehavior: .ignore,
                    serviceName: "retention"
                ),
            ],
            logger: logger
        )
        if let command = configuration.command, configuration.handler == .command, command.workspace == .session,
           let retention = configuration.workspaceRetention {
            let sweeper = SessionWorkspaceSweeper(
                root: command.workdirRoot, retention: retention, store: store,
                holder: "host \(ProcessInfo.processInfo.hostName), pid \(ProcessInfo.processInfo.processIdentifier), worker \(configuration.workerID), sweeping", logger: logger)
            groupConfiguration.services.append(.init(
                service: GatedService(service: SessionWorkspaceRetention(sweeper: sweeper, logger: logger), gate: gate),
                successTerminationBehavior: .ignore,
                serviceName: "workspace-retention"
            ))
        }
        groupConfiguration.maximumGracefulShutdownDuration =
            configuration.shutdownTimeout + configuration.processorConfiguration.releaseGrace + .seconds(10)
        // A service still running this long after the group cancelled it (a call that ignores
        // cancellation) no longer holds the process for good: the group ends with an error, the
        // worker exits 1, and its jobs' leases expire to be rescued, as after a crash.
        groupConfiguration.maximumCancellationDuration = .seconds(5)
        let group = ServiceGroup(configuration: groupConfiguration)
        await shutdown.register(group: group, processor: processor)
        // "Worker service ready" is logged by the schema migrator once the processor may claim.
        try await group.run()
    }

    /// Why this machine's requests cannot be let in without `API_TOKEN`: job commands run here
    /// that share its network, and a command, whatever a prompt made it do, could use the job
    /// API and the dashboard from 127.0.0.1 (enqueue, read every user's jobs, cancel them):
    /// - sandboxed with `JOB_NETWORK=host`: the sandbox keeps the command from everything else;
    /// - unconfined in production (`JOB_SANDBOX=none`), where the secrets are out of the
    ///   command's reach (not in its environment, the worker not dumpable) and the job API would
    ///   be the way in. Unconfined in development, a command can read what the worker's user
    ///   can (a `.env`, the SQLite file) anyway, and the start-up log says so;
    /// - unconfined as another user (`JOB_USER`), in any environment: that user is there to keep
    ///   the command from what the worker's user can read, and the job API would undo it.
    /// `nil`: no command, or none that this would protect from.
    /// (`worker dashboard` asks too: the commands of a `worker run` on its machine, configured
    /// as it is, reach it the same way.)
    static func commandsShareNetwork(_ configuration: WorkerConfiguration, sandboxed: Bool) -> String? {
        guard configuration.handler == .command, configuration.command != nil else { return nil }
        if sandboxed, configuration.sandbox.network == .host { return "job commands share this machine's network (JOB_NETWORK=host)" }
        if !sandboxed, configuration.environment == .production {
            return "job commands run unconfined (JOB_SANDBOX=none) and share this machine's network"
        }
        if !sandboxed, configuration.sandbox.user != nil {
            return "job commands run unconfined as JOB_USER (JOB_SANDBOX=none) and share this machine's network"
        }
        return nil
    }

    private func makeHandler(sandbox: JobSandbox?, limits: JobLimitEnforcement, launcher: JobLauncher?) -> any JobHandler {
        switch configuration.handler {
        case .command:
            if var command = configuration.command {
                command.sandbox = sandbox
                command.limits = limits
                command.user = configuration.sandbox.user
                command.launcher = launcher
                return CommandHandler(configuration: command)
            }
            return EchoHandler()
        case .echo, nil:
            return EchoHandler()
        }
    }
}
