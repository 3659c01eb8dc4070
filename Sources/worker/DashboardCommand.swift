import ArgumentParser
import Foundation
import WorkerService

struct DashboardCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dashboard",
        abstract: "Serve the operator's web dashboard alone, against the configured database.",
        discussion: """
            Open http://HOST:PORT/ui. Read-only unless --allow-actions. With API_TOKEN set it asks \
            for the token once; without it only this machine is answered. `worker run` serves the \
            same dashboard under /ui on its health port.
            """
    )

    @Option(help: "The port to listen on (0: any free port; the log line says which).") var port: Int = 8090
    @Option(help: "The address to listen on.") var host: String = "127.0.0.1"
    @Flag(help: "Offer retry and cancel (one job or a selection).") var allowActions = false

    func validate() throws {
        if !(0...65535).contains(port) { throw ValidationError("--port must be from 0 to 65535") }
    }

    func run() async throws {
        let context = try await CommandContext.load()
        try await context.withStore(existingOnly: true) { store in
            try await DashboardServer.run(
                store: store, configuration: context.configuration, host: host, port: port, allowActions: allowActions, logger: context.logger)
        }
    }
}
