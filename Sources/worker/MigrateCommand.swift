import ArgumentParser
import WorkerService

struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Create or upgrade the database schema (idempotent; run also does it at start)."
    )

    func run() async throws {
        let context = try await CommandContext.load()
        try await context.withStore(migrate: true) { _ in }
        output("Schema is up to date (\(context.configuration.store))")
    }
}
