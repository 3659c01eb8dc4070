import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import WorkerCore
import WorkerDashboard

/// `worker dashboard`: the dashboard alone, on a port of its own, against the configured
/// database (an operator's laptop pointed at production). Read-only unless `allowActions`;
/// `API_TOKEN` asks for a sign-in as under `worker run`, and without it only this machine is
/// answered. Stops on SIGTERM or SIGINT.
public enum DashboardServer {
    public static func run(
        store: any JobStore, configuration: WorkerConfiguration, host: String, port: Int, allowActions: Bool, logger: Logger
    ) async throws {
        let feed = JobEventFeed(store: store, logger: logger)
        let api = JobAPI(
            store: store, feed: feed, token: configuration.apiToken, defaultMaxAttempts: configuration.jobMaxAttempts, logger: logger,
            enqueued: {})
        // As `worker run` on this machine would decide: its job commands, sharing the network,
        // must not reach this dashboard without the token either (JOB_SANDBOX=automatic is
        // taken as sandboxed, as it is wherever bubblewrap works).
        let refusal = WorkerApplication.commandsShareNetwork(configuration, sandboxed: configuration.sandbox.request != .none)
        let dashboard = try Dashboard(
            store: store, token: configuration.apiToken, loopback: LoopbackAccess(refusal: refusal), allowsActions: allowActions,
            eventStream: api.eventStream, logger: logger)
        let router = Router(context: WorkerRequestContext.self)
        router.add(middleware: UnexpectedErrorAnswer(logger: logger))
        router.get("/") { _, _ in Response(status: .seeOther, headers: [.location: "/ui"]) }
        dashboard.addRoutes(to: router)
        var serverLogger = logger
        serverLogger.logLevel = max(logger.logLevel, .warning)
        let app = Application(
            router: router,
            configuration: ApplicationConfiguration(address: .hostname(host, port: port), serverName: nil),
            onServerRunning: { channel in
                let bound = channel.localAddress?.port ?? port
                logger.info("Dashboard at http://\(host):\(bound)/ui", metadata: [
                    "actions": .string(allowActions ? "allowed" : "read-only (--allow-actions to retry and cancel)"),
                    "access": .string(
                        configuration.apiToken != nil ? "sign in with API_TOKEN"
                            : refusal.map { "nobody until API_TOKEN is set (\($0))" } ?? "this machine only (API_TOKEN is unset)"),
                ])
            },
            logger: serverLogger
        )
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [
                .init(service: feed, successTerminationBehavior: .ignore, serviceName: "job-event-feed"),
                .init(service: app, serviceName: "dashboard"),
            ],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        ))
        do {
            try await group.run()
        } catch let error as IOError where error.errnoCode == EADDRINUSE {
            throw WorkerServiceError.dashboardPortInUse(host: host, port: port)
        }
    }
}
