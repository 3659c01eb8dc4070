import ArgumentParser
import Foundation
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
            // The Supabase keys as `run` reads them (a JWKS file that is not one fails here too).
            _ = try await configuration.userTokenVerifier()
            var summary = configuration.redactedSummary + configuration.commandSummary
            for warning in configuration.startupWarnings { summary.append(("  WARNING", warning)) }
            if configuration.handler == .command, let command = configuration.command {
                // What `run` decides, the same way (the sandbox's trial run included): what it
                // would refuse fails here too. (The control group it creates for this short
                // process is removed by the next start's sweep of dead workers' groups.)
                let setup = try await CommandExecutionSetup.prepare(configuration, command: command)
                summary.append(("  sandbox", setup.sandboxSummary))
                summary.append(("  limits", setup.limits.limits.isEmpty ? "none" : setup.limits.summary))
                for note in setup.notes where note.level >= .warning {
                    summary.append(("  WARNING", note.message))
                }
            }
            let width = summary.map(\.name.count).max() ?? 0
            for (name, value) in summary {
                output("\(name.padding(toLength: width, withPad: " ", startingAt: 0))  \(value)")
            }
            output("Configuration is valid")
        }
    }
}
