import ArgumentParser
import Foundation
import WorkerService

struct HealthcheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "healthcheck",
        abstract: "Exit 0 only if the worker's /health answers 200 (for a Docker HEALTHCHECK)."
    )

    @Option(help: "The URL to check (default: http://HEALTH_CHECK_HOST:HEALTH_CHECK_PORT/health).") var url: String?

    func run() async throws {
        let target: URL
        if let url {
            guard let parsed = URL(string: url) else { throw ValidationError("--url \(url) is not a URL") }
            target = parsed
        } else {
            let configuration = try await WorkerConfiguration.load()
            var host = configuration.healthCheckHost
            if host == "0.0.0.0" || host == "::" { host = "127.0.0.1" }
            if host.contains(":") { host = "[\(host)]" }
            target = URL(string: "http://\(host):\(configuration.healthCheckPort)/health")!
        }
        let status: Int
        do {
            status = try HealthProbe.status(of: target)
        } catch {
            throw HealthcheckFailure(message: "unhealthy: \(target): \(error)")
        }
        guard status == 200 else { throw HealthcheckFailure(message: "unhealthy: \(target) answered \(status)") }
        output("healthy: \(target) answered 200")
    }
}

struct HealthcheckFailure: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}
