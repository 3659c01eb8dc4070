import ArgumentParser
import WorkerService

struct ConfigCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Inspect the configuration.",
        subcommands: [Check.self]
    )

    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate the configuration as run would, and print the effective values (secrets redacted)."
        )

        func run() async throws {
            let configuration = try await WorkerConfiguration.load()
            try configuration.validateForRun()
            let summary = configuration.redactedSummary + configuration.commandSummary
            let width = summary.map(\.name.count).max() ?? 0
            for (name, value) in summary {
                output("\(name.padding(toLength: width, withPad: " ", startingAt: 0))  \(value)")
            }
            output("Configuration is valid")
        }
    }
}
