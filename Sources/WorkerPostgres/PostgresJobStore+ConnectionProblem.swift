import Foundation
import NIOCore
import NIOSSL
import PostgresNIO
import WorkerCore

extension PostgresJobStore {
    /// Why PostgreSQL cannot be reached right now, from one direct connection attempt, in words
    /// an operator can act on; `nil` when the attempt succeeds.
    ///
    /// The client's pool retries failed connections quietly, so a call waiting for a pooled
    /// connection can only report that it timed out. This names the cause instead: refused,
    /// unknown host, no answer, authentication, TLS, or a missing database.
    public func connectionProblem(timeout: Duration = .seconds(3)) async -> String? {
        let url = self.url
        let logger = self.logger
        do {
            let tls: PostgresConnection.Configuration.TLS
            if let configuration = Self.tlsConfiguration(for: url) {
                let context = try NIOSSLContext(configuration: configuration)
                tls = url.sslMode == .prefer ? .prefer(context) : .require(context)
            } else {
                tls = .disable
            }
            let configuration = PostgresConnection.Configuration(
                host: url.host, port: url.port, username: url.username, password: url.password, database: url.database, tls: tls)
            let connection = try await withTimeout(timeout, operation: "connecting") {
                let connection = try await PostgresConnection.connect(configuration: configuration, id: 0, logger: logger)
                // Given up on meanwhile (the time-out cancels this): nobody else would close it.
                if Task.isCancelled {
                    try? await connection.close()
                    throw CancellationError()
                }
                return connection
            }
            try? await connection.close()
            return nil
        } catch {
            return Self.describeConnectionProblem(error, host: url.host, port: url.port, user: url.username, database: url.database)
        }
    }

    static func describeConnectionProblem(_ error: any Error, host: String, port: Int, user: String, database: String?) -> String {
        let place = "\(host):\(port)"
        if error is TimeoutError {
            return "no answer from \(place) within 3 s: check the host and port, and that no firewall drops the connection"
        }
        if let state = sqlState(of: error) {
            switch state {
            case "28P01", "28000":
                return "PostgreSQL at \(place) refused the login of user \(user) (SQLSTATE \(state)): check the user and password in DATABASE_URL"
            case "3D000":
                return "PostgreSQL at \(place) has no database \(database ?? user) (SQLSTATE 3D000): check the database name in DATABASE_URL"
            default:
                return "PostgreSQL at \(place) refused the connection: \(describe(error))"
            }
        }
        let text = String(reflecting: error) + " " + String(describing: (error as? PSQLError)?.underlying.map { String(reflecting: $0) } ?? "")
        if text.contains("ECONNREFUSED") || text.contains("Connection refused") || text.contains("connectionRefused") || text.contains("errno: 111") {
            return "connection refused by \(place): is PostgreSQL running there and listening on that port?"
        }
        if text.contains("NXDOMAIN") || text.contains("resolve") || text.contains("getaddrinfo") || text.contains("unknownHost") {
            return "cannot resolve the host \(host): check the host name in DATABASE_URL"
        }
        if text.contains("SSL") || text.contains("TLS") || text.contains("handshake") || text.contains("sslUnsupported") {
            return "TLS with \(place) failed (\(describe(error))): check sslmode in DATABASE_URL (disable, prefer, require, verify-full)"
        }
        return "cannot connect to \(place): \(describe(error))"
    }
}
