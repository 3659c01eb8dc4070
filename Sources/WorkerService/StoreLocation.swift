import WorkerPostgres

/// Where jobs are kept, from `DATABASE_URL`.
public enum StoreLocation: Sendable, Hashable, CustomStringConvertible {
    /// The embedded SQLite file (`DATABASE_URL` unset, or `sqlite:PATH`).
    case sqlite(path: String)
    /// A PostgreSQL database (`postgres://` or `postgresql://`); the URL is kept as given.
    case postgres(url: String)

    /// The default embedded database file, relative to the working directory.
    public static let defaultSQLitePath = "./worker.sqlite"

    /// Parses `DATABASE_URL`.
    /// - Throws: ``ConfigurationError`` naming `DATABASE_URL`, with the value redacted.
    public init(databaseURL: String?) throws {
        guard let url = databaseURL, !url.isEmpty else {
            self = .sqlite(path: Self.defaultSQLitePath)
            return
        }
        let lower = url.lowercased()
        if lower.hasPrefix("sqlite:") {
            var path = String(url.dropFirst("sqlite:".count))
            if path.hasPrefix("//") { path.removeFirst(2) }
            guard !path.isEmpty else {
                throw ConfigurationError(variable: "DATABASE_URL", value: url, expected: "sqlite:PATH with a file path, e.g. sqlite:./worker.sqlite")
            }
            self = .sqlite(path: path)
        } else if lower.hasPrefix("postgres://") || lower.hasPrefix("postgresql://") {
            do {
                _ = try PostgresURL(url)
            } catch let error as PostgresURLError {
                throw ConfigurationError(variable: "DATABASE_URL", value: Self.redact(url), expected: "a valid URL: the \(error.part) \(error.problem)")
            }
            self = .postgres(url: url)
        } else {
            throw ConfigurationError(
                variable: "DATABASE_URL",
                value: Self.redact(url),
                expected: "sqlite:PATH, or postgres://USER:PASSWORD@HOST:PORT/DATABASE"
            )
        }
    }

    public var description: String {
        switch self {
        case .sqlite(let path): "sqlite:\(path)"
        case .postgres(let url): (try? PostgresURL(url).redacted) ?? Self.redact(url)
        }
    }

    /// The URL with any password replaced by `***`; the credentials are split off as
    /// ``PostgresURL`` does, so an unencoded `?`, `/` or `@` in the password is hidden too.
    public static func redact(_ url: String) -> String {
        PostgresURL.redacting(url)
    }
}
