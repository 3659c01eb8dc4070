import Foundation

/// The parts of a `postgres://` or `postgresql://` connection URL.
///
/// `postgres://USER:PASSWORD@HOST:PORT/DATABASE?sslmode=MODE`: user, password and database are
/// percent-decoded (write `@` as `%40`, `:` as `%3A`, `%` as `%25`). Unencoded `?`, `/`, `#`, `@`
/// and `:` in the password work too (``splitCredentials(_:)``); an unencoded `%` does not.
///
/// As libpq's URIs, the query may also give `user`, `password`, `dbname`, `host` and `port`
/// (they win over the parts before it) and `sslrootcert`, the certificate authorities to verify
/// the server with. Client certificates (`sslcert`, `sslkey`) are refused: the worker cannot
/// present one, and a server that asks for it would refuse it at every connection.
public struct PostgresURL: Sendable, Hashable {
    /// How to use TLS, as libpq's `sslmode` (the subset that matters here).
    public enum SSLMode: String, Sendable, CaseIterable {
        /// No TLS.
        case disable
        /// TLS when the server offers it, without verifying its certificate (libpq's default).
        case prefer
        /// TLS always, without verifying the certificate (libpq semantics), unless `sslrootcert`
        /// names the authorities to verify it with: then as `verify-ca` (libpq does the same).
        case require
        /// TLS always, the certificate verified against `sslrootcert` (the system roots without
        /// it), not the host name.
        case verifyCA = "verify-ca"
        /// TLS always, with the certificate verified against `sslrootcert` (the system roots
        /// without it) and the host name.
        case verifyFull = "verify-full"
    }

    public var host: String
    public var port: Int
    public var username: String
    public var password: String?
    public var database: String
    public var sslMode: SSLMode
    /// `sslrootcert`: a file of PEM certificates of the authorities that sign the server's
    /// certificate (Supabase and RDS publish theirs), or `system` for the system's own.
    public var sslRootCertificate: String?
    /// Other query parameters, e.g. `application_name`.
    public var parameters: [String: String]

    /// The query parameters the worker reads; others are named in a warning at start-up.
    public static let usedParameters: Set<String> = ["application_name", "pgbouncer"]

    /// `true` for a transaction-mode pooler (Supavisor or PgBouncer on port 6543, or `pgbouncer=true`):
    /// no LISTEN/NOTIFY and no named prepared statements there.
    public var isTransactionPooler: Bool { transactionPoolerSign != nil }

    /// What marks the URL as a transaction pooler's, for the warning that says so.
    public var transactionPoolerSign: String? {
        if parameters["pgbouncer"] == "true" { return "pgbouncer=true" }
        return port == 6543 ? "port 6543" : nil
    }

    /// Parses `text`.
    ///
    /// The credentials are split off first (see ``splitCredentials(_:)``), so a password may hold
    /// `?`, `/`, `#`, `@` and `:` unencoded. Errors never show any part of the credentials, nor the
    /// text of the host or port, which is where a misplaced password fragment would land.
    /// - Throws: ``PostgresURLError`` naming the part that is wrong.
    public init(_ text: String) throws {
        let lower = text.lowercased()
        guard let schemeEnd = text.range(of: "://"), lower.hasPrefix("postgres://") || lower.hasPrefix("postgresql://") else {
            throw PostgresURLError(part: "scheme", problem: "must start with postgres:// or postgresql://")
        }
        let (credentials, location) = Self.splitCredentials(text[schemeEnd.upperBound...])
        if let credentials {
            if let colon = credentials.firstIndex(of: ":") {
                username = try Self.decode(credentials[..<colon], part: "user name")
                password = try Self.decode(credentials[credentials.index(after: colon)...], part: "password")
            } else {
                username = try Self.decode(credentials, part: "user name")
                password = nil
            }
        } else {
            username = "postgres"
            password = nil
        }
        if username.isEmpty { throw PostgresURLError(part: "user name", problem: "is empty") }

        let parts = Self.locationParts(location)
        let hostPort = parts.hostPort
        if hostPort.hasPrefix("[") {
            guard let close = hostPort.firstIndex(of: "]") else {
                throw PostgresURLError(part: "host", problem: "an IPv6 address must be closed with ]")
            }
            host = String(hostPort[hostPort.index(after: hostPort.startIndex)..<close])
            let after = hostPort[hostPort.index(after: close)...]
            guard after.isEmpty || after.hasPrefix(":") else { throw Self.portError }
            port = try Self.port(after.isEmpty ? nil : after.dropFirst())
        } else if let colon = hostPort.lastIndex(of: ":") {
            host = String(hostPort[..<colon])
            port = try Self.port(hostPort[hostPort.index(after: colon)...])
        } else {
            host = String(hostPort)
            port = 5432
        }
        if host.isEmpty { throw PostgresURLError(part: "host", problem: "is missing (postgres://USER:PASSWORD@HOST:PORT/DATABASE)") }
        if !Self.isHostName(host[...]) {
            throw PostgresURLError(part: "host", problem: "is not a host name or IP address\(Self.encodingHint)")
        }

        let decodedPath = try Self.decode(parts.path, part: "database")
        database = decodedPath.isEmpty ? username : decodedPath
        if database.contains("/") { throw PostgresURLError(part: "database", problem: "must not contain /") }

        var parameters: [String: String] = [:]
        for pair in parts.query.split(separator: "&") where !pair.isEmpty {
            let pieces = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = try Self.decode(pieces[0], part: "query parameter")
            parameters[key] = pieces.count > 1 ? try Self.decode(pieces[1], part: "query parameter \(key)") : ""
        }
        // libpq's connection parameters in the query win over the URL's own parts.
        if let user = parameters.removeValue(forKey: "user") {
            guard !user.isEmpty else { throw PostgresURLError(part: "user name", problem: "is empty") }
            username = user
            if decodedPath.isEmpty { database = user }
        }
        if let secret = parameters.removeValue(forKey: "password") { password = secret }
        if let name = parameters.removeValue(forKey: "dbname") {
            guard !name.isEmpty, !name.contains("/") else { throw PostgresURLError(part: "database", problem: "(dbname) is empty or contains /") }
            database = name
        }
        if let name = parameters.removeValue(forKey: "host") {
            guard !name.isEmpty, Self.isHostName(name[...]) else { throw PostgresURLError(part: "host", problem: "(host) is not a host name or IP address") }
            host = name
        }
        if let number = parameters.removeValue(forKey: "port") { port = try Self.port(number[...]) }
        for refused in ["sslcert", "sslkey", "sslpassword"] where parameters[refused] != nil {
            throw PostgresURLError(
                part: refused, problem: "is not supported: the worker cannot present a client certificate; sign in with a password instead")
        }
        if let file = parameters.removeValue(forKey: "sslrootcert") {
            guard file == "system" || FileManager.default.isReadableFile(atPath: file) else {
                throw PostgresURLError(part: "sslrootcert", problem: "names a file that cannot be read: \(file)")
            }
            sslRootCertificate = file
        } else {
            sslRootCertificate = nil
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

    /// Splits what follows `scheme://` into the credentials (`nil` without an `@`) and the rest
    /// (`HOST:PORT/DATABASE?QUERY`).
    ///
    /// The credentials end at an `@`, but both an unencoded password and the query may hold one
    /// (`u:p@ss@h/d`, `u:p@h/d?application_name=a@b`). The credentials end at the first `@` after
    /// which a well-formed location follows (a plain host and port, a database without `/` or `@`,
    /// `key=value` parameters); when none does, at the last `@`, and parsing then reports what is wrong.
    public static func splitCredentials(_ afterScheme: Substring) -> (credentials: Substring?, location: Substring) {
        let ats = afterScheme.indices.filter { afterScheme[$0] == "@" }
        guard let last = ats.last else { return (nil, afterScheme) }
        let split = ats.first { isWellFormedLocation(afterScheme[afterScheme.index(after: $0)...]) } ?? last
        return (afterScheme[..<split], afterScheme[afterScheme.index(after: split)...])
    }

    /// `HOST:PORT`, the path after the first `/` and the query after the first `?`.
    private static func locationParts(_ location: Substring) -> (hostPort: Substring, path: Substring, query: Substring) {
        var rest = location
        var query: Substring = ""
        if let mark = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: mark)...]
            rest = rest[..<mark]
        }
        var path: Substring = ""
        if let slash = rest.firstIndex(of: "/") {
            path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
        }
        return (rest, path, query)
    }

    private static func isWellFormedLocation(_ location: Substring) -> Bool {
        let parts = locationParts(location)
        var hostPort = parts.hostPort
        if hostPort.hasPrefix("[") {
            guard let close = hostPort.firstIndex(of: "]") else { return false }
            let address = hostPort[hostPort.index(after: hostPort.startIndex)..<close]
            guard !address.isEmpty, address.allSatisfy({ $0.isHexDigit || ":.%".contains($0) }) else { return false }
            hostPort = hostPort[hostPort.index(after: close)...]
            if !hostPort.isEmpty {
                guard hostPort.hasPrefix(":") else { return false }
                hostPort = "x" + hostPort
            } else {
                hostPort = "x"
            }
        }
        var hostText = hostPort
        if let colon = hostPort.lastIndex(of: ":") {
            hostText = hostPort[..<colon]
            guard hostPort[hostPort.index(after: colon)...].allSatisfy({ $0.isASCII && $0.isNumber }) else { return false }
        }
        guard !hostText.isEmpty, isHostName(hostText) else { return false }
        guard !parts.path.contains(where: { "/@#".contains($0) }) else { return false }
        return parts.query.split(separator: "&").allSatisfy { pair in
            guard let equals = pair.firstIndex(of: "=") else { return false }
            let key = pair[..<equals]
            return !key.isEmpty && key.allSatisfy { ($0.isASCII && ($0.isLetter || $0.isNumber)) || "_.-%".contains($0) }
                && !pair.contains("#")
        }
    }

    /// Letters, digits, `.`, `-`, `_` (and `:`, `%` inside IPv6 addresses).
    private static func isHostName(_ text: Substring) -> Bool {
        text.allSatisfy { $0.isLetter || $0.isNumber || ".-_:%".contains($0) }
    }

    private static let encodingHint = " (if the password holds / ? # @ or %, percent-encode them as %2F %3F %23 %40 %25)"

    private static var portError: PostgresURLError {
        PostgresURLError(part: "port", problem: "is not a number from 1 to 65535\(encodingHint)")
    }

    private static func decode(_ text: Substring, part: String) throws -> String {
        guard let decoded = String(text).removingPercentEncoding else {
            throw PostgresURLError(part: part, problem: "has a malformed %-escape (write % as %25)")
        }
        return decoded
    }

    /// The port; its text is never shown, as a misplaced password fragment would land there.
    private static func port(_ text: Substring?) throws -> Int {
        guard let text, !text.isEmpty else { return 5432 }
        guard text.allSatisfy({ $0.isASCII && $0.isNumber }), let port = Int(text), (1...65535).contains(port) else {
            throw portError
        }
        return port
    }

    /// `text` with the password replaced by `***` (for messages about a URL that may not parse).
    /// Without a well-formed location, everything up to the last `@` counts as credentials; a
    /// `password` in the query is hidden too. A value that is no URL at all (a JDBC URL, libpq's
    /// `host=... password=...`) is not shown past its scheme: where its password is cannot be told.
    public static func redacting(_ text: String) -> String {
        guard let schemeEnd = text.range(of: "://") else { return withheld(text) }
        let (credentials, location) = splitCredentials(text[schemeEnd.upperBound...])
        let user = credentials.map { credentials in
            (credentials.firstIndex(of: ":").map { String(credentials[..<$0]) + ":***" } ?? String(credentials)) + "@"
        } ?? ""
        return String(text[..<schemeEnd.upperBound]) + user + hidingQueryPasswords(location)
    }

    /// `location` with the values of `password` and `sslpassword` in its query replaced by `***`.
    private static func hidingQueryPasswords(_ location: Substring) -> String {
        guard let mark = location.firstIndex(of: "?") else { return String(location) }
        let items = location[location.index(after: mark)...].split(separator: "&", omittingEmptySubsequences: false).map { item -> String in
            let key = item.split(separator: "=", maxSplits: 1).first.map { $0.lowercased() } ?? ""
            return ["password", "sslpassword"].contains(key) ? key + "=***" : String(item)
        }
        return String(location[...mark]) + items.joined(separator: "&")
    }

    /// What a message shows of a value that is no URL: its scheme, if it has one, and its length.
    private static func withheld(_ text: String) -> String {
        let scheme = text.prefix { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "+" || $0 == "-" || $0 == ".") }
        let shown = !scheme.isEmpty && scheme.count <= 20 && text.dropFirst(scheme.count).first == ":" ? "\(scheme):..." : ""
        return "\(shown)(\(text.count) characters, the rest not shown: it may hold a password)"
    }

    /// The URL with the password replaced by `***`.
    public var redacted: String {
        let credentials = password == nil ? username : "\(username):***"
        let hostPart = host.contains(":") ? "[\(host)]" : host
        return "postgres://\(credentials)@\(hostPart):\(port)/\(database)?sslmode=\(sslMode.rawValue)"
            + (sslRootCertificate.map { "&sslrootcert=\($0)" } ?? "")
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
