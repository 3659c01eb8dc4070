import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import WorkerCore
import WorkerDashboard

/// The HTTP server for orchestrators: `GET`/`HEAD /health` (the process is alive),
/// `/ready` (the store answers and the processor is claiming) and `/metrics` (Prometheus); and
/// for backends and phones, the job API under `/jobs` (``JobAPI``). Other paths answer 404.
public struct HealthServer: Service {
    private let host: String
    private let port: Int
    private let logger: Logger
    private let readiness: ReadinessProbe
    private let metrics: (@Sendable () -> [UInt8])?
    private let jobAPI: JobAPI?
    private let dashboard: Dashboard?

    /// - Parameters:
    ///   - readiness: the checks of `/ready`; it caches the database's answer (see ``ReadinessProbe``).
    ///   - metrics: the Prometheus text for `GET /metrics`; `nil` answers 404 there.
    ///   - jobAPI: the `/jobs` endpoints; `nil` answers 404 there.
    ///   - dashboard: the operator's pages under `/ui`; `nil` answers 404 there.
    public init(
        host: String, port: Int, logger: Logger, readiness: ReadinessProbe, metrics: (@Sendable () -> [UInt8])? = nil, jobAPI: JobAPI? = nil,
        dashboard: Dashboard? = nil
    ) {
        self.host = host
        self.port = port
        self.logger = logger
        self.readiness = readiness
        self.metrics = metrics
        self.jobAPI = jobAPI
        self.dashboard = dashboard
    }

    public func run() async throws {
        let router = Router(context: WorkerRequestContext.self, options: .autoGenerateHeadEndpoints)
        let logger = self.logger
        router.add(middleware: UnexpectedErrorAnswer(logger: logger))
        router.get("/health") { _, _ -> Response in
            logger.trace("Health check requested")
            return Self.json(.ok, Self.healthBody())
        }
        let readiness = self.readiness
        router.get("/ready") { _, _ -> Response in
            let checks = await readiness.evaluate()
            let failing = checks.filter { $0.value != nil }
            let rendered = checks.keys.sorted().map { key -> String in
                "\(Self.quote(key)):\(Self.quote(checks[key]!.map { "failing: \($0)" } ?? "ok"))"
            }.joined(separator: ",")
            let status = failing.isEmpty ? "ready" : "not ready"
            return Self.json(failing.isEmpty ? .ok : .serviceUnavailable, "{\"status\":\"\(status)\",\"checks\":{\(rendered)}}")
        }
        if let metrics {
            router.get("/metrics") { _, _ -> Response in
                Response(
                    status: .ok,
                    headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8", .cacheControl: "no-store"],
                    body: ResponseBody(byteBuffer: ByteBuffer(bytes: metrics()))
                )
            }
        }
        jobAPI?.addRoutes(to: router)
        dashboard?.addRoutes(to: router)
        var serverLogger = logger
        serverLogger.logLevel = max(logger.logLevel, .warning)
        let app = Application(
            router: router,
            configuration: ApplicationConfiguration(address: .hostname(host, port: port), serverName: nil),
            onServerRunning: { [host, port] _ in
                logger.info("Health check server started", metadata: ["host": .string(host), "port": .stringConvertible(port)])
            },
            logger: serverLogger
        )
        do {
            try await app.run()
        } catch let error as IOError where error.errnoCode == EADDRINUSE {
            throw WorkerServiceError.portInUse(host: host, port: port)
        }
        logger.info("Health check server stopped")
    }

    /// `{"status":"healthy","uptime":<seconds>,"timestamp":"<ISO-8601>"}`
    static func healthBody() -> String {
        let uptime = (ProcessClock.uptimeSeconds * 1000).rounded() / 1000
        return "{\"status\":\"healthy\",\"uptime\":\(uptime),\"timestamp\":\"\(LogTimestamp.iso8601(Date()))\"}"
    }

    static func json(_ status: HTTPResponse.Status, _ body: String) -> Response {
        Response(
            status: status,
            headers: [.contentType: "application/json", .cacheControl: "no-store"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: body))
        )
    }

    static func quote(_ text: String) -> String {
        JSONText.quoted(text)
    }
}
