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
            if configuration.handler == .command, configuration.command != nil {
                // The same trial run as `run` makes: a sandbox that cannot start fails here too.
                let decision = try await configuration.sandbox.decide(environment: configuration.environment)
                summary.append(("  sandbox", decision.summary))
                // The same decision as `run` makes (the control group it creates for this short
                // process is removed by the next start's sweep of dead workers' groups).
                let limits = configuration.sandbox.limits
                if limits.isEmpty {
                    summary.append(("  limits", "none"))
                } else {
                    summary.append(("  limits", try configuration.sandbox.prepareLimits().summary))
                }
                if decision.sandbox == nil, getuid() == 0, configuration.sandbox.user == nil {
                    summary.append(("  WARNING", "commands would run as root with no sandbox: a job's command could read and change everything on this machine"))
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
