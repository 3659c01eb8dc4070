import Foundation
import Logging
import PostgresNIO
import WorkerCore

/// Turning PostgresNIO's errors into messages an operator can act on.
extension PostgresJobStore {
    /// Runs a store operation, turning PostgresNIO's deliberately vague errors into messages
    /// an operator can act on (SQLSTATE and server message, or the connection problem).
    func translatingErrors<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch {
            throw Self.translate(error)
        }
    }

    /// The error a store call reports for `error`: its own errors (also from inside a
    /// transaction) as they are, a refused value (SQLSTATE classes 22 and 54) as
    /// ``JobStoreError/valueRejected(_:)``, as is a failed check (23514: an event's data that is
    /// not a JSON object), a missing privilege (42501) as
    /// ``JobStoreError/notPermitted(_:)``, anything else with its SQLSTATE and message.
    static func translate(_ error: any Error) -> any Error {
        if let error = error as? PostgresTransactionError, let inner = error.closureError {
            return translate(inner)
        }
        switch error {
        case is JobStoreError, is PostgresJobStoreError, is TimeoutError, is CancellationError:
            return error
        default:
            break
        }
        let message = describe(error)
        let state = sqlState(of: error)
        if let state {
            if state.hasPrefix("22") || state.hasPrefix("54") || state == "23514" { return JobStoreError.valueRejected(message) }
            if state == "42501" {
                return JobStoreError.notPermitted(
                    "\(message): the database role in DATABASE_URL lacks a privilege the worker needs; it needs SELECT, INSERT, UPDATE and DELETE on the jobs table and on its events table (and CREATE on its schema for migrations: run `worker migrate` once as the table's owner, and set AUTO_MIGRATE=false for a role without it)"
                )
            }
        }
        return PostgresJobStoreError.database(message, sqlState: state)
    }

    /// `text` without NUL characters, which a PostgreSQL `text` value cannot hold.
    static func storableText(_ text: String) -> String {
        text.contains("\u{0}") ? text.replacingOccurrences(of: "\u{0}", with: "") : text
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? PostgresTransactionError {
            if let inner = error.closureError { return describe(inner) }
            if let inner = error.beginError { return describe(inner) }
            if let inner = error.commitError { return describe(inner) }
        }
        guard let error = error as? PSQLError else { return String(describing: error) }
        if let info = error.serverInfo {
            let state = info[.sqlState] ?? "?"
            let message = info[.message] ?? "error"
            let detail = info[.detail].map { " (\($0))" } ?? ""
            return "PostgreSQL error \(state): \(message)\(detail)"
        }
        if let underlying = error.underlying { return "\(error.code): \(underlying)" }
        return "\(error.code)"
    }
}
