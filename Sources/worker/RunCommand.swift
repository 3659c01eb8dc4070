import ArgumentParser
import Foundation
import WorkerService

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the worker service (the default command).",
        discussion: "Stops gracefully on SIGTERM, SIGINT or SIGHUP; a second signal gives running jobs back at once."
    )

    func run() async throws {
        // A child that closes its end of a pipe must not kill the worker.
        signal(SIGPIPE, SIG_IGN)
        let context = try await CommandContext.load(logOutput: .standardOutput)
        do {
            try await WorkerApplication(configuration: context.configuration, logger: context.logger).run()
        } catch {
            context.logger.critical("Fatal error in worker service", metadata: ["error": "\(error)"])
            throw error
        }
    }
}
