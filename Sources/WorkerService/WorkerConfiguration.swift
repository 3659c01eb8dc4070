import Configuration
import Foundation
import Logging
import WorkerCore
import WorkerExecution
import WorkerPostgres

/// The worker's validated settings, read from the environment first and a `.env` file second.
///
/// Every value is checked at start-up: a malformed or out-of-range value throws a
/// ``ConfigurationError`` naming the variable, the value and what is expected.
public struct WorkerConfiguration: Sendable {
    public var environment: AppEnvironment
    public var store: StoreLocation
    public var pollInterval: Duration
    public var maxConcurrentJobs: Int
    public var shutdownTimeout: Duration
    public var healthCheckHost: String
    public var healthCheckPort: Int
    public var logLevel: Logger.Level
    public var logFormat: LogFormat
    /// `NO_COLOR` set and not empty (in the environment or `.env`): pretty logs without colours.
    public var noColour: Bool
    public var monitorInterval: Duration
    public var jobMaxAttempts: Int
    public var leaseDuration: Duration
    public var queues: [String]
    /// `nil` when `JOB_HANDLER` is unset and no `JOB_COMMAND` is given (echo is used in
    /// development, refused in production); `command` whenever `JOB_COMMAND` is set.
    public var handler: HandlerKind?
    /// How `command` runs jobs; set when `JOB_COMMAND` is.
    public var command: CommandHandlerConfiguration?
    /// How commands are to be confined; decided at start-up (``SandboxSettings/decide(environment:path:)``).
    public var sandbox: SandboxSettings
    public var workerID: String
    public var retryBase: Duration
    public var retryMax: Duration
    /// The jobs table (`JOBS_TABLE`) and, on PostgreSQL, its schema (`JOBS_SCHEMA`).
    public var jobsTable: String
    public var jobsSchema: String
    /// Whether `run` and the CLI create or upgrade the schema themselves (`AUTO_MIGRATE`).
    public var autoMigrate: Bool
    /// Whether start-up also applies row-level security and the app's functions for a Supabase
    /// project (`SUPABASE_RLS`, as `worker migrate --supabase` does).
    public var supabaseRLS: Bool
    /// The most pending jobs one user may have through `enqueue_coding_job`
    /// (`MAX_PENDING_JOBS_PER_USER`).
    public var maxPendingJobsPerUser: Int
    /// The queues a Supabase user's `enqueue_…` may name (`SUPABASE_USER_QUEUES`).
    public var supabaseUserQueues: [String]
    /// The Supabase project's JWT secret (HS256), for users' access tokens on the job API's
    /// reads (`SUPABASE_JWT_SECRET`).
    public var supabaseJWTSecret: String?
    /// A file with the project's signing keys as a JWKS (ES256, RS256; `SUPABASE_JWKS_FILE`).
    public var supabaseJWKSFile: String?
    /// Where the project publishes its signing keys (`SUPABASE_JWKS_URL`, fetched from time to time).
    public var supabaseJWKSURL: String?
    /// The audience a user's token must name (`SUPABASE_JWT_AUDIENCE`, Supabase's `authenticated`).
    public var supabaseJWTAudience: String
    /// The most connections a worker opens to PostgreSQL (`DATABASE_MAX_CONNECTIONS`).
    public var databaseMaxConnections: Int
    /// How long finished jobs are kept (`RETENTION_COMPLETED`, `RETENTION_FAILED`, in days; 0 keeps forever).
    public var retention: RetentionSweeper.Policy
    /// Whether a turn that fails for good holds the rest of its session (`SESSION_ON_FAILURE`).
    public var sessionOnFailure: SessionFailurePolicy
    /// How long an unused session workspace is kept (`WORKSPACE_RETENTION_HOURS`; `nil`: forever).
    public var workspaceRetention: Duration?
    /// The bounds on each attempt's live events (`JOB_EVENT_MAX_BYTES`, `JOB_EVENTS_LIMIT`).
    public var eventLimits: JobEventStream.Limits
    /// The bearer token of the job API (`API_TOKEN`); unset: the API answers loopback peers only.
    public var apiToken: String?

    /// The variables the worker reads, with their defaults, in the order `config check` shows them.
    public static let variables: [(name: String, defaultValue: String, secret: Bool)] = [
        ("APP_ENV", "development", false),
        ("NODE_ENV", "", false),
        ("DATABASE_URL", "sqlite:\(StoreLocation.defaultSQLitePath)", true),
        ("JOBS_TABLE", "coding_jobs", false),
        ("JOBS_SCHEMA", "public", false),
        ("AUTO_MIGRATE", "true", false),
        ("SUPABASE_RLS", "false", false),
        ("MAX_PENDING_JOBS_PER_USER", "10", false),
        ("SUPABASE_USER_QUEUES", NewJob.defaultQueue, false),
        ("SUPABASE_JWT_SECRET", "", true),
        ("SUPABASE_JWKS_FILE", "", false),
        ("SUPABASE_JWKS_URL", "", false),
        ("SUPABASE_JWT_AUDIENCE", "authenticated", false),
        ("DATABASE_MAX_CONNECTIONS", "10", false),
        ("WORKER_QUEUES", NewJob.defaultQueue, false),
        ("WORKER_ID", "<host>-<pid>-<random>", false),
        ("MAX_CONCURRENT_JOBS", "1", false),
        ("POLL_INTERVAL_MS", "10000", false),
        ("LEASE_DURATION_MS", "30000", false),
        ("SHUTDOWN_TIMEOUT_MS", "30000", false),
        ("JOB_MAX_ATTEMPTS", "3", false),
        ("RETRY_BACKOFF_BASE_MS", "1000", false),
        ("RETRY_BACKOFF_MAX_MS", "600000", false),
        ("RETENTION_COMPLETED", "7", false),
        ("RETENTION_FAILED", "30", false),
        ("SESSION_ON_FAILURE", "continue", false),
        ("JOB_EVENT_MAX_BYTES", "65536", false),
        ("JOB_EVENTS_LIMIT", "10000", false),
        ("JOB_HANDLER", "command when JOB_COMMAND is set, else echo", false),
        ("JOB_COMMAND", "", false),
        ("JOB_SHELL", "false", false),
        ("JOB_TIMEOUT_MS", "900000", false),
        ("JOB_KILL_GRACE_MS", "10000", false),
        ("JOB_OUTPUT_LIMIT_BYTES", "1048576", false),
        ("JOB_WORKDIR_ROOT", "<temp>/mobvibe-worker-jobs", false),
        ("JOB_KEEP_WORKDIR", "never", false),
        ("JOB_WORKSPACE", "job", false),
        ("JOB_GIT_CHANGES", "true with JOB_WORKSPACE=session, else false", false),
        ("WORKSPACE_RETENTION_HOURS", "168", false),
        ("JOB_ENV_PASSTHROUGH", "", false),
        ("JOB_PERMANENT_EXIT_CODES", "", false),
        ("JOB_SANDBOX", "bubblewrap when it works (production: required unless none)", false),
        ("JOB_NETWORK", "none", false),
        ("JOB_SANDBOX_RO_PATHS", "", false),
        ("JOB_SANDBOX_RW_PATHS", "", false),
        ("JOB_SANDBOX_TMP_MB", "1024", false),
        ("JOB_MEMORY_LIMIT_MB", "", false),
        ("JOB_CPU_LIMIT", "", false),
        ("JOB_PIDS_LIMIT", "", false),
        ("JOB_DISK_LIMIT_MB", "", false),
        ("JOB_USER", "", false),
        ("HEALTH_CHECK_HOST", "127.0.0.1", false),
        ("HEALTH_CHECK_PORT", "8080", false),
        ("API_TOKEN", "", true),
        ("MONITOR_INTERVAL_MS", "30000", false),
        ("LOG_LEVEL", "info", false),
        ("LOG_FORMAT", "pretty (json in production)", false),
    ]

    /// Names whose values are never printed or logged.
    public static let secretVariables: Set<String> = Set(variables.filter(\.secret).map(\.name))

    /// Whether the JWKS may be fetched from `text`: HTTPS, or plain HTTP to this machine only,
    /// judged on the parsed host (a prefix test let `http://localhost@attacker.example/` and
    /// `http://localhost.attacker.example/` through, keys that sign any user's token fetched in
    /// the clear from elsewhere), and never with a user name.
    static func isTrustedKeysURL(_ text: String) -> Bool {
        guard let url = URLComponents(string: text), let scheme = url.scheme?.lowercased(),
              let host = url.host?.lowercased(), !host.isEmpty, url.user == nil, url.password == nil
        else { return false }
        switch scheme {
        case "https":
            return true
        case "http":
            let bare = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
            if bare == "localhost" || bare == "::1" { return true }
            let parts = bare.split(separator: ".", omittingEmptySubsequences: false)
            return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { part in UInt8(part).map { String($0) == part } ?? false }
        default:
            return false
        }
    }

    /// Reads and validates the configuration.
    ///
    /// Two swift-configuration providers, the first with a value wins: the process environment,
    /// then the `.env` file. The file is parsed by ``DotenvFile`` (as Node's dotenv reads it) and
    /// handed over as an in-memory `EnvironmentVariablesProvider`, so both layers look names up and
    /// mark secrets the same way.
    ///
    /// - Parameters:
    ///   - environment: the process environment (wins over the file).
    ///   - environmentFile: a `.env` file; a missing file is fine.
    public static func load(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        environmentFile: String = ".env"
    ) async throws -> WorkerConfiguration {
        let secrets = SecretsSpecifier<String, String>.specific(secretVariables)
        let file: DotenvFile
        do {
            file = try DotenvFile(contentsOf: environmentFile)
        } catch let error as DotenvFile.ReadError {
            throw ConfigurationError(variable: "(.env file)", value: environmentFile, expected: "a readable KEY=VALUE text file (\(error.reason))")
        }
        let reader = ConfigReader(providers: [
            EnvironmentVariablesProvider(environmentVariables: environment, secretsSpecifier: secrets),
            EnvironmentVariablesProvider(environmentVariables: file.values, secretsSpecifier: secrets),
        ])
        return try WorkerConfiguration(values: ConfigValues(reader: reader))
    }

    init(values: ConfigValues) throws {
        environment = try values.choice("APP_ENV", fallback: "NODE_ENV", default: .development)
        store = try StoreLocation(databaseURL: values.raw("DATABASE_URL"))
        // PostgreSQL derives names from the table's and cuts them at 63; SQLite has no such bound.
        let tableNameLength = if case .postgres = store { PostgresJobStore.maximumTableNameLength } else { 63 }
        jobsTable = try values.sqlIdentifier("JOBS_TABLE", default: "coding_jobs", maxLength: tableNameLength)
        jobsSchema = try values.sqlIdentifier("JOBS_SCHEMA", default: "public")
        autoMigrate = try values.boolean("AUTO_MIGRATE", default: true)
        supabaseRLS = try values.boolean("SUPABASE_RLS", default: false)
        maxPendingJobsPerUser = try values.integer("MAX_PENDING_JOBS_PER_USER", default: 10, range: 1...1_000_000)
        supabaseUserQueues = try values.list("SUPABASE_USER_QUEUES", default: [NewJob.defaultQueue])
        supabaseJWTSecret = values.raw("SUPABASE_JWT_SECRET")
        if let secret = supabaseJWTSecret, secret.utf8.count < 32 {
            throw ConfigurationError(variable: "SUPABASE_JWT_SECRET", value: "(redacted)", expected: "the project's JWT secret (Supabase's are at least 32 characters; Project Settings, API)")
        }
        supabaseJWKSFile = values.raw("SUPABASE_JWKS_FILE")
        if let file = supabaseJWKSFile, !FileManager.default.isReadableFile(atPath: file) {
            throw ConfigurationError(variable: "SUPABASE_JWKS_FILE", value: file, expected: "a readable file holding the project's JWKS (https://<project>.supabase.co/auth/v1/.well-known/jwks.json)")
        }
        supabaseJWKSURL = values.raw("SUPABASE_JWKS_URL")
        if let url = supabaseJWKSURL, !Self.isTrustedKeysURL(url) {
            throw ConfigurationError(
                variable: "SUPABASE_JWKS_URL", value: url.contains("@") ? "(a URL with a user name, not shown)" : url,
                expected: "an https:// URL without a user name (https://<project>.supabase.co/auth/v1/.well-known/jwks.json); http:// only to this machine (localhost, 127.x.x.x, [::1])")
        }
        supabaseJWTAudience = values.raw("SUPABASE_JWT_AUDIENCE") ?? "authenticated"
        databaseMaxConnections = try values.integer("DATABASE_MAX_CONNECTIONS", default: 10, range: 8...500)
        let completedDays = try values.integer("RETENTION_COMPLETED", default: 7, range: 0...36_500)
        let failedDays = try values.integer("RETENTION_FAILED", default: 30, range: 0...36_500)
        retention = RetentionSweeper.Policy(
            completed: completedDays == 0 ? nil : .seconds(completedDays * 86_400),
            failed: failedDays == 0 ? nil : .seconds(failedDays * 86_400)
        )
        sessionOnFailure = try values.choice("SESSION_ON_FAILURE", default: .continue)
        let workspaceHours = try values.integer("WORKSPACE_RETENTION_HOURS", default: 168, range: 0...876_000)
        workspaceRetention = workspaceHours == 0 ? nil : .seconds(workspaceHours * 3600)
        eventLimits = JobEventStream.Limits(
            maximumEventBytes: try values.integer("JOB_EVENT_MAX_BYTES", default: 65_536, range: 256...1_048_576),
            eventsPerAttempt: try values.integer("JOB_EVENTS_LIMIT", default: 10_000, range: 0...10_000_000)
        )
        queues = try values.list("WORKER_QUEUES", default: [NewJob.defaultQueue])
        workerID = try values.identifier("WORKER_ID") ?? Self.defaultWorkerID()
        maxConcurrentJobs = try values.integer("MAX_CONCURRENT_JOBS", default: 1, range: 1...1000)
        pollInterval = .milliseconds(try values.integer("POLL_INTERVAL_MS", default: 10_000, range: 10...3_600_000))
        leaseDuration = .milliseconds(try values.integer("LEASE_DURATION_MS", default: 30_000, range: 500...86_400_000))
        shutdownTimeout = .milliseconds(try values.integer("SHUTDOWN_TIMEOUT_MS", default: 30_000, range: 0...86_400_000))
        jobMaxAttempts = try values.integer("JOB_MAX_ATTEMPTS", default: 3, range: 1...1000)
        retryBase = .milliseconds(try values.integer("RETRY_BACKOFF_BASE_MS", default: 1000, range: 1...86_400_000))
        retryMax = .milliseconds(try values.integer("RETRY_BACKOFF_MAX_MS", default: 600_000, range: 1...604_800_000))
        handler = try values.optionalChoice("JOB_HANDLER", HandlerKind.self)
        command = try Self.commandConfiguration(values)
        sandbox = try SandboxSettings.parse(values)
        if handler == nil, command != nil { handler = .command }
        if handler == .command, command == nil {
            throw ConfigurationError(variable: "JOB_COMMAND", value: "", expected: "a command to run when JOB_HANDLER=command")
        }
        healthCheckHost = try values.host("HEALTH_CHECK_HOST", default: "127.0.0.1")
        healthCheckPort = try values.integer("HEALTH_CHECK_PORT", default: 8080, range: 1...65535)
        apiToken = values.raw("API_TOKEN").flatMap { $0.isEmpty ? nil : $0 }
        if let apiToken, apiToken.utf8.count < 16 {
            throw ConfigurationError(variable: "API_TOKEN", value: "(\(apiToken.utf8.count) characters)", expected: "at least 16 characters (e.g. openssl rand -hex 32)")
        }
        monitorInterval = .milliseconds(try values.integer("MONITOR_INTERVAL_MS", default: 30_000, range: 100...86_400_000))
        logLevel = try values.logLevel("LOG_LEVEL", default: .info)
        logFormat = try values.choice("LOG_FORMAT", default: environment == .production ? .json : .pretty)
        // no-color.org: present and not empty.
        noColour = values.raw("NO_COLOR").map { !$0.isEmpty } ?? false
        if retryMax < retryBase {
            throw ConfigurationError(
                variable: "RETRY_BACKOFF_MAX_MS",
                value: "\(retryMax.inMilliseconds)",
                expected: "at least RETRY_BACKOFF_BASE_MS (\(retryBase.inMilliseconds))"
            )
        }
        if supabaseRLS {
            if case .sqlite = store {
                throw ConfigurationError(
                    variable: "SUPABASE_RLS", value: "true",
                    expected: "false with the embedded SQLite store: row-level security is PostgreSQL's (set DATABASE_URL to the Supabase project's database)")
            }
            if !autoMigrate {
                throw ConfigurationError(
                    variable: "SUPABASE_RLS", value: "true",
                    expected: "false with AUTO_MIGRATE=false (the worker then changes no schema): run `worker migrate --supabase` once instead")
            }
        }
    }

    static func commandConfiguration(_ values: ConfigValues) throws -> CommandHandlerConfiguration? {
        guard let command = values.raw("JOB_COMMAND") else { return nil }
        let passthrough = try values.list("JOB_ENV_PASSTHROUGH", default: [], allowEmpty: true, pattern: .environmentName)
        if let secret = passthrough.first(where: { secretVariables.contains($0) }) {
            throw ConfigurationError(variable: "JOB_ENV_PASSTHROUGH", value: passthrough.joined(separator: ","), expected: "names that are not secret (\(secret) is)")
        }
        let workspace: WorkspaceMode = try values.choice("JOB_WORKSPACE", default: .job)
        let gitChanges = try values.boolean("JOB_GIT_CHANGES", default: workspace == .session)
        if gitChanges, workspace != .session {
            throw ConfigurationError(
                variable: "JOB_GIT_CHANGES", value: values.raw("JOB_GIT_CHANGES") ?? "true",
                expected: "false unless JOB_WORKSPACE=session (a fresh per-job directory has no earlier state to compare with)")
        }
        do {
            return try CommandHandlerConfiguration(
                command: command,
                useShell: try values.boolean("JOB_SHELL", default: false),
                workdirRoot: values.raw("JOB_WORKDIR_ROOT") ?? CommandHandlerConfiguration.defaultWorkdirRoot,
                workspace: workspace,
                gitChanges: gitChanges,
                keepWorkdir: try values.choice("JOB_KEEP_WORKDIR", default: .never),
                environmentPassthrough: passthrough,
                timeout: .milliseconds(try values.integer("JOB_TIMEOUT_MS", default: 900_000, range: 100...604_800_000)),
                killGrace: .milliseconds(try values.integer("JOB_KILL_GRACE_MS", default: 10_000, range: 0...600_000)),
                outputLimitBytes: try values.integer(
                    "JOB_OUTPUT_LIMIT_BYTES", default: 1_048_576, range: 1024...CommandHandlerConfiguration.maximumOutputLimitBytes),
                permanentExitCodes: try values.exitStatuses("JOB_PERMANENT_EXIT_CODES")
            )
        } catch let error as ShellWords.Error {
            throw ConfigurationError(variable: "JOB_COMMAND", value: command, expected: "a command line (\(error.description))")
        }
    }

    /// `host-pid-random`, unique per process.
    static func defaultWorkerID() -> String {
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "worker"
        let suffix = UUID().uuidString.prefix(6).lowercased()
        return "\(host)-\(ProcessInfo.processInfo.processIdentifier)-\(suffix)"
    }

    /// The settings the processor runs with.
    public var processorConfiguration: JobProcessorConfiguration {
        var configuration = JobProcessorConfiguration(
            workerID: workerID,
            queues: queues,
            maxConcurrentJobs: maxConcurrentJobs,
            pollInterval: pollInterval,
            leaseDuration: leaseDuration,
            shutdownTimeout: shutdownTimeout,
            retryPolicy: RetryPolicy(base: retryBase, maximum: retryMax),
            releaseGrace: (handler == .command ? command?.killGrace ?? .zero : .zero) + .seconds(5)
        )
        configuration.eventLimits = eventLimits
        return configuration
    }

    /// The effective configuration as `NAME=value` pairs, secrets redacted.
    public var redactedSummary: [(name: String, value: String)] {
        [
            ("APP_ENV", environment.rawValue),
            ("DATABASE_URL", store.description),
            ("JOBS_TABLE", jobsTable),
            ("JOBS_SCHEMA", jobsSchema),
            ("AUTO_MIGRATE", "\(autoMigrate)"),
            ("SUPABASE_RLS", "\(supabaseRLS)"),
            ("MAX_PENDING_JOBS_PER_USER", "\(maxPendingJobsPerUser)"),
            ("SUPABASE_USER_QUEUES", supabaseUserQueues.joined(separator: ",")),
            ("SUPABASE_JWT_SECRET", supabaseJWTSecret == nil ? "(unset)" : "(set)"),
            ("SUPABASE_JWKS_FILE", supabaseJWKSFile ?? "(unset)"),
            ("SUPABASE_JWKS_URL", supabaseJWKSURL ?? "(unset)"),
            ("SUPABASE_JWT_AUDIENCE", supabaseJWTAudience),
            ("DATABASE_MAX_CONNECTIONS", "\(databaseMaxConnections)"),
            ("WORKER_QUEUES", queues.joined(separator: ",")),
            ("WORKER_ID", workerID),
            ("MAX_CONCURRENT_JOBS", "\(maxConcurrentJobs)"),
            ("POLL_INTERVAL_MS", "\(pollInterval.inMilliseconds)"),
            ("LEASE_DURATION_MS", "\(leaseDuration.inMilliseconds)"),
            ("SHUTDOWN_TIMEOUT_MS", "\(shutdownTimeout.inMilliseconds)"),
            ("JOB_MAX_ATTEMPTS", "\(jobMaxAttempts)"),
            ("RETRY_BACKOFF_BASE_MS", "\(retryBase.inMilliseconds)"),
            ("RETRY_BACKOFF_MAX_MS", "\(retryMax.inMilliseconds)"),
            ("RETENTION_COMPLETED", retention.completed.map { "\(Int($0.inSeconds / 86_400)) days" } ?? "forever"),
            ("RETENTION_FAILED", retention.failed.map { "\(Int($0.inSeconds / 86_400)) days" } ?? "forever"),
            ("SESSION_ON_FAILURE", sessionOnFailure.rawValue),
            ("JOB_EVENT_MAX_BYTES", "\(eventLimits.maximumEventBytes)"),
            ("JOB_EVENTS_LIMIT", "\(eventLimits.eventsPerAttempt)"),
            ("JOB_HANDLER", handler?.rawValue ?? "(unset: echo)"),
            ("HEALTH_CHECK_HOST", healthCheckHost),
            ("HEALTH_CHECK_PORT", "\(healthCheckPort)"),
            ("API_TOKEN", apiToken == nil ? "(unset: the job API answers on this machine only)" : "(set, redacted)"),
            ("MONITOR_INTERVAL_MS", "\(monitorInterval.inMilliseconds)"),
            ("LOG_LEVEL", logLevel.rawValue),
            ("LOG_FORMAT", logFormat.rawValue),
        ]
    }

    /// The command handler's settings for `config check`.
    public var commandSummary: [(name: String, value: String)] {
        guard let command else { return [] }
        return [
            ("JOB_COMMAND", command.command),
            ("  program", command.resolvedProgram() ?? "\(command.argv[0]) (NOT FOUND or not executable)"),
            ("  arguments", command.argv.dropFirst().map { "\"\($0)\"" }.joined(separator: " ")),
            ("JOB_SHELL", "\(command.useShell)"),
            ("JOB_TIMEOUT_MS", "\(command.timeout.inMilliseconds)"),
            ("JOB_KILL_GRACE_MS", "\(command.killGrace.inMilliseconds)"),
            ("JOB_OUTPUT_LIMIT_BYTES", "\(command.outputLimitBytes)"),
            ("JOB_WORKDIR_ROOT", command.workdirRoot),
            ("JOB_KEEP_WORKDIR", command.keepWorkdir.rawValue),
            ("JOB_WORKSPACE", command.workspace.rawValue),
            ("JOB_GIT_CHANGES", command.gitChanges
                ? "true (git: \(CommandHandlerConfiguration.resolvedGit() ?? "NOT FOUND in PATH"))" : "false"),
            ("WORKSPACE_RETENTION_HOURS", command.workspace != .session ? "(unused: JOB_WORKSPACE=job)"
                : workspaceRetention.map { "\(Int($0.inSeconds / 3600))" } ?? "0 (kept forever)"),
            ("JOB_ENV_PASSTHROUGH", command.environmentPassthrough.joined(separator: ",")),
            ("JOB_PERMANENT_EXIT_CODES", command.permanentExitCodes.sorted().map(String.init).joined(separator: ",")),
            ("JOB_SANDBOX", sandbox.request.rawValue),
            ("JOB_NETWORK", sandbox.network.rawValue),
            ("JOB_SANDBOX_RO_PATHS", sandbox.readOnlyPaths.joined(separator: ",")),
            ("JOB_SANDBOX_RW_PATHS", sandbox.writablePaths.joined(separator: ",")),
            ("JOB_SANDBOX_TMP_MB", "\(sandbox.tmpBytes >> 20)"),
            ("JOB_MEMORY_LIMIT_MB", sandbox.limits.memoryBytes.map { "\($0 >> 20)" } ?? "(none)"),
            ("JOB_CPU_LIMIT", sandbox.limits.cpuCores.map { "\($0)" } ?? "(none)"),
            ("JOB_PIDS_LIMIT", sandbox.limits.pids.map { "\($0)" } ?? "(none)"),
            ("JOB_DISK_LIMIT_MB", sandbox.limits.diskBytes.map { "\($0 >> 20)" } ?? "(none)"),
            ("JOB_USER", sandbox.user.map { "\($0.name) (uid \($0.uid))" } ?? "(the worker's)"),
        ]
    }

    /// Checks what only `run` requires: a handler chosen explicitly in production, a command
    /// that exists, and git when session workspaces record their changes.
    /// - Parameter path: where programs are looked up (the worker's `PATH`).
    public func validateForRun(path: String? = ProcessInfo.processInfo.environment["PATH"]) throws {
        // A name that does not resolve failed `run` later with "cannot resolve X", naming no variable.
        do {
            try Socket.withAddress(host: healthCheckHost, port: healthCheckPort) { _, _, _ in }
        } catch let error as SocketError {
            throw ConfigurationError(
                variable: "HEALTH_CHECK_HOST", value: healthCheckHost,
                expected: "an address of this machine to listen on, or a name it resolves (\(error))")
        }
        if let command, handler == .command, environment == .production, command.resolvedProgram(path: path) == nil {
            throw ConfigurationError(
                variable: "JOB_COMMAND",
                value: command.command,
                expected: "a program that exists and is executable (\(command.argv[0]) was not found)"
            )
        }
        if let command, handler == .command, command.workspace == .session, command.gitChanges, CommandHandlerConfiguration.resolvedGit(path: path) == nil {
            throw ConfigurationError(
                variable: "JOB_GIT_CHANGES",
                value: "true",
                expected: "git in PATH for the change summary of session workspaces (Debian: apt-get install git), or JOB_GIT_CHANGES=false"
            )
        }
        if handler == nil, environment == .production {
            throw ConfigurationError(
                variable: "JOB_COMMAND",
                value: "",
                expected: "the agent's command to be set in production (the echo handler only echoes prompts; JOB_HANDLER=echo to run it all the same)"
            )
        }
        // The shipped manifests set JOB_HANDLER=echo for their demo, and JOB_COMMAND's natural
        // edit left it: every real job completed with {"echo": prompt}, for good.
        if handler == .echo, let command, environment == .production {
            throw ConfigurationError(
                variable: "JOB_HANDLER", value: "echo",
                expected: "command, or unset, when JOB_COMMAND is set (\(command.command.prefix(80))): with echo, JOB_COMMAND never runs and every job completes with {\"echo\": prompt}")
        }
    }

    /// What `run` says at start-up of a configuration it accepts but that is likely a mistake.
    public var startupWarnings: [String] {
        var warnings: [String] = []
        if handler == .echo, let command {
            warnings.append("JOB_HANDLER=echo: JOB_COMMAND (\(command.command.prefix(80))) is not run; every job completes with {\"echo\": prompt}. Unset JOB_HANDLER to run it")
        }
        return warnings
    }
}
