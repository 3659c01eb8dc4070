import Foundation
import Logging
import WorkerCore
import WorkerService

/// What every command starts with: the validated configuration, logging, and on request the store.
struct CommandContext {
    let configuration: WorkerConfiguration
    let logger: Logger

    /// Loads the configuration and installs logging (to standard error: a command's standard
    /// output is its result; `run` logs to standard output).
    static func load(logOutput: LogOutput = .standardError, minimumLevel: Logger.Level? = nil) async throws -> CommandContext {
        ProcessClock.markStart()
        let configuration = try await WorkerConfiguration.load()
        let level = minimumLevel.map { max($0, configuration.logLevel) } ?? configuration.logLevel
        LoggingSetup.bootstrap(format: configuration.logFormat, level: level, output: logOutput, noColour: configuration.noColour)
        return CommandContext(configuration: configuration, logger: Logger(label: "worker"))
    }

    /// Opens the configured store (migrating it when `AUTO_MIGRATE` is on, or `migrate` is `true`),
    /// runs `body`, and closes the store.
    ///
    /// - Parameter existingOnly: for commands that only read or change existing jobs (`jobs`,
    ///   `stats`, `dashboard`): a missing SQLite file is a ``NoDatabase`` error instead of a new
    ///   empty database, and the schema is checked, never created or upgraded (``SchemaNotCurrent``):
    ///   an operator's newer binary, asked for statistics, upgraded production's schema under its
    ///   older workers, which then refused to start again.
    func withStore<T: Sendable>(
        migrate: Bool = false,
        existingOnly: Bool = false,
        _ body: (any JobStore) async throws -> T
    ) async throws -> T {
        let autoMigrate = configuration.autoMigrate
        let location = configuration.store
        if existingOnly, case .sqlite(let path) = location, !FileManager.default.fileExists(atPath: path) {
            throw NoDatabase(path: path)
        }
        return try await JobStoreConnector.withStore(configuration, logger: logger) { store in
            do {
                try await withTimeout(.seconds(10), operation: "the database") { try await store.ping() }
            } catch {
                throw DatabaseUnreachable(location: "\(location)", reason: "\(error)")
            }
            if migrate {
                try await store.migrate()
            } else if existingOnly {
                do {
                    try await store.verifySchema()
                } catch JobStoreError.notPermitted {
                    throw SchemaNotCurrent(table: configuration.jobsTable, location: "\(location)")
                }
            } else if autoMigrate {
                try await store.migrate()
            } else {
                // AUTO_MIGRATE=false: checked, as `run` checks it (before, `enqueue` went ahead
                // and failed with "no such table", naming nothing to do).
                try await store.verifySchema()
            }
            return try await body(store)
        }
    }
}

/// Writes to standard output (command results; the only place the worker prints).
func output(_ text: String) {
    FileHandle.standardOutput.write(Data((text + "\n").utf8))
}

/// Writes progress to standard error, only when it is a terminal.
func progress(_ text: String) {
    guard isatty(STDERR_FILENO) == 1 else { return }
    FileHandle.standardError.write(Data(("\r\u{1B}[K" + text).utf8))
}

/// The CLI could not reach the database; the location is shown with its password redacted.
struct DatabaseUnreachable: Error, CustomStringConvertible {
    var location: String
    var reason: String
    var description: String { "cannot reach the database \(location): \(reason)" }
}
