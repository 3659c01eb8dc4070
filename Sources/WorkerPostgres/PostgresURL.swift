import Foundation

/// The parts of a `postgres://` or `postgresql://` connection URL.
///
/// `postgres://USER:PASSWORD@HOST:PORT/DATABASE?sslmode=MODE`: user, password and database are
/// percent-decoded (write `@` as `%40`, `:` as `%3A`, `%` as `%25`; an unencoded `@` in the
/// password also works, as the last `@` ends the credentials).
public struct PostgresURL: Sendable, Hashable {
    /// How to use TLS, as libpq's `sslmode` (the subset that matters here).
    public enum SSLMode: String, Sendable, CaseIterable {
        /// No TLS.
        case disable
        /// TLS when the server offers it, without verifying its certificate (libpq's default).
        case prefer
        /// TLS always, without verifying the certificate (libpq semantics).
        case require
        /// TLS always, with the certificate verified against the system roots and the host name.
        case verifyFull = "verify-full"
    }

    public var host: String
    public var port: Int
    public var username: String
    public var password: String?
    public var database: String
    public var sslMode: SSLMode
    /// Other query parameters, e.g. `application_name`.
    public var parameters: [String: String]

    /// `true` for a transaction-mode pooler (Supavisor or PgBouncer on port 6543, or `pgbouncer=true`):
    /// no LISTEN/NOTIFY and no named prepared statements there.
    public var isTransactionPooler: Bool {
        port == 6543 || parameters["pgbouncer"] == "true"
    }

    /// Parses `text`.
    /// - Throws: ``PostgresURLError`` naming the part that is wrong.
    public init(_ text: String) throws {
        let lower = text.lowercased()
        guard let schemeEnd = text.range(of: "://"), lower.hasPrefix("postgres://") || lower.hasPrefix("postgresql://") else {
            throw PostgresURLError(part: "scheme", problem: "must start with postgres:// or postgresql://")
        }
        var rest = Substring(text[schemeEnd.upperBound...])
        var query: Substring = ""
        if let mark = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: mark)...]
            rest = rest[..<mark]
        }
        var path: Substring = ""
        // The path starts at the first "/" after the credentials.
        let hostStart = rest.lastIndex(of: "@").map { rest.index(after: $0) } ?? rest.startIndex
        if let slash = rest[hostStart...].firstIndex(of: "/") {
            path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
        }
        var hostPort = rest
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            hostPort = rest[rest.index(after: at)...]
            let user: Substring
            if let colon = credentials.firstIndex(of: ":") {
                user = credentials[..<colon]
                password = try Self.decode(credentials[credentials.index(after: colon)...], part: "password")
            } else {
                user = credentials
                password = nil
            }
            username = try Self.decode(user, part: "user name")
        } else {
            username = "postgres"
            password = nil
        }
        if username.isEmpty { throw PostgresURLError(part: "user name", problem: "is empty") }

        if hostPort.hasPrefix("[") {
            guard let close = hostPort.firstIndex(of: "]") else {
                throw PostgresURLError(part: "host", problem: "an IPv6 address must be closed with ]")
            }
            host = String(hostPort[hostPort.index(after: hostPort.startIndex)..<close])
            let after = hostPort[hostPort.index(after: close)...]
            port = try Self.port(after.hasPrefix(":") ? after.dropFirst() : nil)
        } else if let colon = hostPort.lastIndex(of: ":") {
            host = String(hostPort[..<colon])
            port = try Self.port(hostPort[hostPort.index(after: colon)...])
        } else {
            host = String(hostPort)
            port = 5432
        }
        if host.isEmpty { throw PostgresURLError(part: "host", problem: "is missing (postgres://USER:PASSWORD@HOST:PORT/DATABASE)") }
        if host.contains(where: { $0 == "/" || $0 == " " || $0 == "@" }) { throw PostgresURLError(part: "host", problem: "\"\(host)\" is not a host name") }

        let decodedPath = try Self.decode(path, part: "database")
        database = decodedPath.isEmpty ? username : decodedPath
        if database.contains("/") { throw PostgresURLError(part: "database", problem: "must not contain /") }

        var parameters: [String: String] = [:]
        for pair in query.split(separator: "&") where !pair.isEmpty {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = try Self.decode(parts[0], part: "query parameter")
            parameters[key] = parts.count > 1 ? try Self.decode(parts[1], part: "query parameter \(key)") : ""
        }
        let mode = parameters.removeValue(forKey: "sslmode") ?? SSLMode.prefer.rawValue
        guard let sslMode = SSLMode(rawValue: mode) else {
            throw PostgresURLError(
                part: "sslmode",
                problem: "\"\(mode)\" is not supported; use one of \(SSLMode.allCases.map(\.rawValue).joined(separator: ", "))"
            )
        }
        self.sslMode = sslMode
        self.parameters = parameters
    }

    private static func decode(_ text: Substring, part: String) throws -> String {
        guard let decoded = String(text).removingPercentEncoding else {
            throw PostgresURLError(part: part, problem: "has a malformed %-escape (write % as %25)")
        }
        return decoded
    }

    private static func port(_ text: Substring?) throws -> Int {
        guard let text, !text.isEmpty else { return 5432 }
        guard let port = Int(text), (1...65535).contains(port) else {
            throw PostgresURLError(part: "port", problem: "\"\(text)\" is not a port number from 1 to 65535")
        }
        return port
    }

    /// The URL with the password replaced by `***`.
    public var redacted: String {
        let credentials = password == nil ? username : "\(username):***"
        let hostPart = host.contains(":") ? "[\(host)]" : host
        return "postgres://\(credentials)@\(hostPart):\(port)/\(database)?sslmode=\(sslMode.rawValue)"
    }
}

/// A malformed `DATABASE_URL`; never contains the password.
public struct PostgresURLError: Error, Sendable, Hashable, CustomStringConvertible {
    public var part: String
    public var problem: String

    public var description: String {
        "DATABASE_URL: the \(part) \(problem)"
    }
}
