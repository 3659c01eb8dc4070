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
        try Socket.ensureAvailable(host: configuration.healthCheckHost, port: configuration.healthCheckPort)
        var sandbox: JobSandbox?
        var limits = JobLimitEnforcement.none
        var launcher: JobLauncher?
        if configuration.handler == .command, let command = configuration.command {
            // The default, in the shared /tmp, must be the worker's own: anyone may make it first.
            // A folder the operator chose (a Kubernetes emptyDir is mode 2777, a network volume
            // may belong to another uid) is theirs to judge: a warning.
            let isDefault = command.workdirRoot == CommandHandlerConfiguration.defaultWorkdirRoot
            if let problem = WorkdirRoot.problem(at: command.workdirRoot, followingSymlink: !isDefault) {
                if isDefault {
                    throw ConfigurationError(
                        variable: "JOB_WORKDIR_ROOT", value: "(unset: \(command.workdirRoot))",
                        expected: "the default folder to be the worker's own, which no other user may write; it \(problem). Remove it, or set JOB_WORKDIR_ROOT to a folder of the worker's")
                }
                logger.warning("JOB_WORKDIR_ROOT \(problem): another user of this machine could redirect the worker's file operations there", metadata: ["path": .string(command.workdirRoot)])
            }
            limits = try configuration.sandbox.prepareLimits()
            logger.info("Job limits: \(limits.limits.isEmpty ? "none (no JOB_*_LIMIT set); attempts' CPU time and peak memory not measured" : limits.summary)")
            if let user = configuration.sandbox.user {
                launcher = limits.launcher ?? JobLauncher.locate()
                guard launcher != nil else {
                    throw ConfigurationError(
                        variable: "JOB_USER", value: user.name,
                        expected: "unset, or worker-launch beside the worker binary or in PATH (it becomes the user before the command starts; swift build --product worker-launch)")
                }
                logger.info("Job user: commands run as \(user.name) (uid \(user.uid), gid \(user.gid))")
            }
            let decision = try await configuration.sandbox.decide(environment: configuration.environment)
            sandbox = decision.sandbox
            if sandbox != nil, launcher == nil {
                // Inside the sandbox, worker-launch tells a sandbox that failed to start from a
                // command that failed (the trial ran it there).
                launcher = limits.launcher ?? JobLauncher.locate()
                if launcher == nil {
                    logger.warning("worker-launch was not found: a sandbox that fails to start a command will count as the job's failure, not this worker's (swift build --product worker-launch)")
                }
            }
            // Whatever starts commands through worker-launch outside the sandbox (limits,
            // JOB_USER, a sandbox started without it inside) needs its `--announce`.
            for outer in Set([launcher, limits.launcher].compactMap { $0 }) {
                if let problem = await outer.check() { throw JobLauncherError(path: outer.path, problem: problem) }
            }
            if let warning = decision.warning {
                logger.warning("\(warning)")
            } else if decision.sandbox == nil {
                logger.warning("Job sandbox: \(decision.summary)")
            } else {
                logger.info("Job sandbox: \(decision.summary)")
            }
            if decision.sandbox == nil, getuid() == 0, configuration.sandbox.user == nil {
                logger.warning("Commands run as root with no sandbox: a job's command can read and change everything on this machine")
            }
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
            readiness: ReadinessProbe(checks: [.store(store), .processor(processor), .outcomes(processor)], logger: logger),
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
    ///   can (a `.env`, the SQLite file) anyway, and the start-up log says so.
    /// `nil`: no command, or none that this would protect from.
    /// (`worker dashboard` asks too: the commands of a `worker run` on its machine, configured
    /// as it is, reach it the same way.)
    static func commandsShareNetwork(_ configuration: WorkerConfiguration, sandboxed: Bool) -> String? {
        guard configuration.handler == .command, configuration.command != nil else { return nil }
        if sandboxed, configuration.sandbox.network == .host { return "job commands share this machine's network (JOB_NETWORK=host)" }
        if !sandboxed, configuration.environment == .production {
            return "job commands run unconfined (JOB_SANDBOX=none) and share this machine's network"
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
