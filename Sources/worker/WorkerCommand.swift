import ArgumentParser
import Foundation
import WorkerService

@main
struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Runs and administers the mobvibe coding-job worker.",
        discussion: """
            Configuration comes from environment variables, then a .env file in the working directory.
            With no DATABASE_URL the worker uses the embedded SQLite file ./worker.sqlite.
            """,
        subcommands: [
            RunCommand.self, EnqueueCommand.self, JobsCommand.self, StatsCommand.self, MigrateCommand.self,
            HealthcheckCommand.self, ConfigCommand.self, BenchCommand.self, DashboardCommand.self,
        ],
        defaultSubcommand: RunCommand.self
    )
}
