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
        LoggingSetup.bootstrap(format: configuration.logFormat, level: level, output: logOutput)
        return CommandContext(configuration: configuration, logger: Logger(label: "worker"))
    }

    /// Opens the configured store (migrating it), runs `body`, and closes the store.
    func withStore<T>(_ body: (any JobStore) async throws -> T) async throws -> T {
        let connection = try await JobStoreConnector.open(configuration.store, logger: logger)
        let result: T
        do {
            result = try await body(connection.store)
        } catch {
            try? await connection.store.close()
            throw error
        }
        try await connection.store.close()
        return result
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
