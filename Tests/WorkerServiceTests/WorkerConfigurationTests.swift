import Foundation
import Logging
import Testing
@testable import WorkerService

@Suite("WorkerConfiguration")
struct WorkerConfigurationTests {
    static func load(_ environment: [String: String], file: String? = nil) async throws -> WorkerConfiguration {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("env-\(UUID().uuidString)").path
        if let file { try file.write(toFile: path, atomically: true, encoding: .utf8) }
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try await WorkerConfiguration.load(environment: environment, environmentFile: path)
    }

    @Test("NO_COLOR from the environment or .env turns colours off; unset or empty leaves them")
    func noColour() async throws {
        #expect(try await Self.load([:]).noColour == false)
        #expect(try await Self.load(["NO_COLOR": ""]).noColour == false)
        #expect(try await Self.load(["NO_COLOR": "1"]).noColour == true)
        // Before: read with getenv only, so .env's (as .env.example shows it) was ignored.
        #expect(try await Self.load([:], file: "NO_COLOR=1\n").noColour == true)
    }

    @Test("defaults match the plan")
    func defaults() async throws {
        let configuration = try await Self.load([:])
        #expect(configuration.environment == .development)
        #expect(configuration.store == .sqlite(path: "./worker.sqlite"))
        #expect(configuration.pollInterval == .milliseconds(10_000))
        #expect(configuration.maxConcurrentJobs == 1)
        #expect(configuration.shutdownTimeout == .milliseconds(30_000))
        #expect(configuration.healthCheckPort == 8080 && configuration.healthCheckHost == "127.0.0.1")
        #expect(configuration.logLevel == .info && configuration.logFormat == .pretty)
        #expect(configuration.monitorInterval == .milliseconds(30_000))
        #expect(configuration.jobMaxAttempts == 3 && configuration.leaseDuration == .milliseconds(30_000))
        #expect(configuration.queues == ["default"] && configuration.handler == nil)
    }

    /// Each variable with a malformed and an out-of-range value.
    static let badValues: [(String, String)] = [
        ("MAX_CONCURRENT_JOBS", "abc"), ("MAX_CONCURRENT_JOBS", "0"),
        ("POLL_INTERVAL_MS", "fast"), ("POLL_INTERVAL_MS", "-5"),
        ("SHUTDOWN_TIMEOUT_MS", "1.5"), ("SHUTDOWN_TIMEOUT_MS", "99999999999"),
        ("HEALTH_CHECK_PORT", "http"), ("HEALTH_CHECK_PORT", "70000"),
        ("HEALTH_CHECK_HOST", "bad host!"), ("HEALTH_CHECK_HOST", String(repeating: "a", count: 300)),
        ("LOG_LEVEL", "loud"), ("LOG_LEVEL", "9"),
        ("LOG_FORMAT", "xml"), ("LOG_FORMAT", "0"),
        ("APP_ENV", "staging"), ("NODE_ENV", "qa"),
        ("MONITOR_INTERVAL_MS", "often"), ("MONITOR_INTERVAL_MS", "1"),
        ("JOB_MAX_ATTEMPTS", "three"), ("JOB_MAX_ATTEMPTS", "0"),
        ("LEASE_DURATION_MS", "long"), ("LEASE_DURATION_MS", "10"),
        ("WORKER_QUEUES", "a,,b"), ("WORKER_QUEUES", "bad queue"),
        ("JOB_HANDLER", "shell"), ("JOB_HANDLER", "1"),
        ("DATABASE_URL", "mysql://user:hunter2@db/x"), ("DATABASE_URL", "sqlite:"),
        ("RETRY_BACKOFF_BASE_MS", "x"), ("RETRY_BACKOFF_BASE_MS", "0"),
        ("RETRY_BACKOFF_MAX_MS", "y"), ("RETRY_BACKOFF_MAX_MS", "999999999999"),
        ("WORKER_ID", "has space"), ("WORKER_ID", String(repeating: "w", count: 200)),
        ("JOBS_TABLE", "1jobs"), ("JOBS_TABLE", String(repeating: "t", count: 64)),
    ]

    @Test("SUPABASE_JWKS_URL: https, or http to this machine judged by the URL's host: a user name or a lookalike host is refused")
    func keysURL() async throws {
        for url in ["https://abc.supabase.co/auth/v1/.well-known/jwks.json", "http://127.0.0.1:9999/jwks.json", "http://localhost/jwks.json", "http://[::1]:80/k"] {
            #expect(try await Self.load(["SUPABASE_JWKS_URL": url]).supabaseJWKSURL == url)
        }
        // Before: each passed a prefix test, and the first fetched from attacker.example.
        for url in [
            "http://localhost@attacker.example/jwks.json", "http://localhost.attacker.example/jwks.json", "http://127.0.0.1.nip.io/jwks.json",
            "https://user:pass@abc.supabase.co/jwks.json", "http://example.com/jwks.json", "ftp://localhost/jwks.json", "localhost/jwks.json",
        ] {
            let error = try await #require(throws: ConfigurationError.self, "\(url)") { _ = try await Self.load(["SUPABASE_JWKS_URL": url]) }
            #expect(error.variable == "SUPABASE_JWKS_URL")
        }
    }

    @Test("a malformed or out-of-range value names the variable, the value and what is expected", arguments: badValues)
    func rejects(variable: String, value: String) async throws {
        let error = try await #require(throws: ConfigurationError.self) { _ = try await Self.load([variable: value]) }
        #expect(error.variable == variable)
        #expect(error.description.contains(variable))
        #expect(error.description.contains("expected"))
        #expect(!error.description.contains("hunter2"))
    }

    @Test("JOBS_TABLE on PostgreSQL is at most 43 characters (the names PostgreSQL makes from it stay whole); on SQLite 63")
    func tableNameLength() async throws {
        let long = String(repeating: "t", count: 44)
        let error = try await #require(throws: ConfigurationError.self) {
            _ = try await Self.load(["JOBS_TABLE": long, "DATABASE_URL": "postgres://u@h/d"])
        }
        #expect(error.description.contains("at most 43"))
        #expect(try await Self.load(["JOBS_TABLE": String(long.prefix(43)), "DATABASE_URL": "postgres://u@h/d"]).jobsTable.count == 43)
        #expect(try await Self.load(["JOBS_TABLE": long]).jobsTable == long)
    }

    @Test(".env is read, and the environment wins over it")
    func dotEnv() async throws {
        let file = """
            # comment
            MAX_CONCURRENT_JOBS=4
            LOG_LEVEL=debug
            WORKER_QUEUES=alpha, beta
            """
        let configuration = try await Self.load(["LOG_LEVEL": "warning"], file: file)
        #expect(configuration.maxConcurrentJobs == 4)
        #expect(configuration.logLevel == .warning)
        #expect(configuration.queues == ["alpha", "beta"])
    }

    @Test("a bad value in .env is reported like one in the environment")
    func badDotEnv() async throws {
        let error = try await #require(throws: ConfigurationError.self) { _ = try await Self.load([:], file: "HEALTH_CHECK_PORT=0\n") }
        #expect(error.variable == "HEALTH_CHECK_PORT")
    }

    @Test("NODE_ENV is a fallback for APP_ENV, and production defaults to JSON logs")
    func environmentFallback() async throws {
        let production = try await Self.load(["NODE_ENV": "production"])
        #expect(production.environment == .production && production.logFormat == .json)
        let explicit = try await Self.load(["NODE_ENV": "production", "APP_ENV": "test"])
        #expect(explicit.environment == .test && explicit.logFormat == .pretty)
    }

    @Test("production refuses to run without JOB_HANDLER")
    func productionNeedsHandler() async throws {
        let configuration = try await Self.load(["APP_ENV": "production"])
        #expect(throws: ConfigurationError.self) { try configuration.validateForRun() }
        try await Self.load(["APP_ENV": "production", "JOB_HANDLER": "echo"]).validateForRun()
    }

    @Test("DATABASE_URL forms, with passwords redacted")
    func storeLocation() throws {
        #expect(try StoreLocation(databaseURL: "sqlite:/tmp/x.db") == .sqlite(path: "/tmp/x.db"))
        #expect(try StoreLocation(databaseURL: "sqlite:///tmp/x.db") == .sqlite(path: "/tmp/x.db"))
        let postgres = try StoreLocation(databaseURL: "postgres://me:p%40ss:word@db:5432/jobs")
        #expect(postgres.description == "postgres://me:***@db:5432/jobs?sslmode=prefer")
        #expect(StoreLocation.redact("postgresql://u:a@b@host/db") == "postgresql://u:***@host/db")
        let summary = try WorkerConfiguration(values: ConfigValuesFixture.values(["DATABASE_URL": "postgres://u:s3cret@h/d"])).redactedSummary
        #expect(!summary.contains { $0.value.contains("s3cret") })
    }

    @Test(
        "command limits the store cannot hold, bad permanent exit codes and too few connections are refused at start-up",
        arguments: [
            ("JOB_OUTPUT_LIMIT_BYTES", "16777217"), ("JOB_OUTPUT_LIMIT_BYTES", "1073741824"),
            ("JOB_PERMANENT_EXIT_CODES", "0"), ("JOB_PERMANENT_EXIT_CODES", "2,x"), ("JOB_PERMANENT_EXIT_CODES", "256"),
            ("DATABASE_MAX_CONNECTIONS", "2"),
        ]
    )
    func rejectsCommandLimits(variable: String, value: String) async throws {
        let error = try await #require(throws: ConfigurationError.self) {
            _ = try await Self.load(["JOB_COMMAND": "/bin/cat", variable: value])
        }
        #expect(error.variable == variable && error.description.contains("expected"))
    }

    @Test("permanent exit codes are read as a set")
    func permanentExitCodes() async throws {
        let configuration = try await Self.load(["JOB_COMMAND": "/bin/cat", "JOB_PERMANENT_EXIT_CODES": " 64, 2 ,64", "JOB_OUTPUT_LIMIT_BYTES": "16777216"])
        #expect(configuration.command?.permanentExitCodes == [2, 64])
        #expect(configuration.command?.outputLimitBytes == 16_777_216)
    }
}

extension WorkerConfigurationTests {
    @Test(".env written for Node's dotenv: quotes stripped, inline comments dropped, export prefix allowed")
    func nodeStyleDotEnv() async throws {
        let file = """
            export MAX_CONCURRENT_JOBS=4 # four
            DATABASE_URL="postgres://app:s3cr3t@db.example.com:6543/app"
            WORKER_QUEUES='alpha,beta'
            LOG_LEVEL=`debug`
            """
        let configuration = try await Self.load([:], file: file)
        #expect(configuration.maxConcurrentJobs == 4)
        #expect(configuration.store == .postgres(url: "postgres://app:s3cr3t@db.example.com:6543/app"))
        #expect(configuration.queues == ["alpha", "beta"])
        #expect(configuration.logLevel == .debug)
    }

    @Test("WORKER_QUEUES entries follow the queue-name rule of jobs ([A-Za-z0-9_.:-], 1 to 64)")
    func queueNames() async throws {
        let accepted = try await Self.load(["WORKER_QUEUES": "mail:send, default"])
        #expect(accepted.queues == ["mail:send", "default"])
        let tooLong = String(repeating: "q", count: 65)
        for bad in [tooLong, "ok,\(tooLong)", "bad queue", "a/b", "é"] {
            let error = try await #require(throws: ConfigurationError.self) { _ = try await Self.load(["WORKER_QUEUES": bad]) }
            #expect(error.variable == "WORKER_QUEUES" && error.value == bad)
            #expect(error.description.contains("1 to 64") && error.description.contains("A-Z a-z 0-9 _ . : -"), "\(error)")
        }
    }

    @Test("a DATABASE_URL whose password holds ? and / parses, and an error about it never shows the password")
    func databaseURLPassword() async throws {
        let configuration = try await Self.load(["DATABASE_URL": "postgres://app:s3cr3tQ?x/y@host/app"])
        #expect(configuration.store == .postgres(url: "postgres://app:s3cr3tQ?x/y@host/app"))
        #expect(configuration.store.description == "postgres://app:***@host:5432/app?sslmode=prefer")
        for bad in ["postgres://app:s3cr3tQ?x/y@host:abc/app", "postgres://app:s3cr3tQ?x/y@host/app?application_name=a@b&sslmode=x"] {
            let error = try await #require(throws: ConfigurationError.self) { _ = try await Self.load(["DATABASE_URL": bad]) }
            #expect(!error.description.contains("s3cr3t") && !error.description.contains("x/y"), "\(error)")
        }
        #expect(StoreLocation.redact("postgres://app:s3cr3tQ?x/y@host/app?application_name=a@b") == "postgres://app:***@host/app?application_name=a@b")
        // Forms that are no postgres:// URL, or hold the password in the query: never shown.
        for bad in [
            "jdbc:postgresql://db:5432/app?user=app&password=S3cr3tQ", "host=db user=app password=S3cr3tQ dbname=app",
            "postgres://app@db/app?password=S3cr3tQ&sslmode=allow", "postgres://app@db/app?sslmode=bogus&PASSWORD=S3cr3tQ",
        ] {
            let error = try await #require(throws: ConfigurationError.self) { _ = try await Self.load(["DATABASE_URL": bad]) }
            #expect(!error.description.contains("S3cr3t"), "\(error)")
            #expect(error.description.contains("DATABASE_URL"), "\(error)")
        }
        // The password given in the query (libpq's form) is used, and shown as no other.
        let queried = try await Self.load(["DATABASE_URL": "postgres://app@db/app?password=S3cr3tQ&sslmode=verify-ca"])
        #expect(queried.store.description == "postgres://app:***@db:5432/app?sslmode=verify-ca", "\(queried.store.description)")
        #expect(StoreLocation.redact("jdbc:postgresql://db/app?password=S3cr3tQ") == "jdbc:postgresql://db/app?password=***")
        #expect(StoreLocation.redact("host=db password=S3cr3tQ") == "(24 characters, the rest not shown: it may hold a password)")
        #expect(StoreLocation.redact("mysql:whatever") == "mysql:...(14 characters, the rest not shown: it may hold a password)")
    }
}

enum ConfigValuesFixture {
    static func values(_ environment: [String: String]) -> ConfigValues {
        ConfigValues(reader: .init(provider: EnvironmentVariablesProviderFixture.make(environment)))
    }

}
