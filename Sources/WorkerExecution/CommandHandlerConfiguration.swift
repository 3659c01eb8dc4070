import Foundation
import WorkerCore

/// How the command handler runs each job (`JOB_COMMAND` and friends).
public struct CommandHandlerConfiguration: Sendable, Hashable {
    /// When to keep a job's working directory after the job (`JOB_KEEP_WORKDIR`).
    public enum KeepWorkdir: String, Sendable, CaseIterable {
        case never
        case onFailure = "on-failure"
        case always
    }

    /// The command as configured (`JOB_COMMAND`).
    public var command: String
    /// Program and arguments, split as a shell would (or `/bin/sh -c command` with `JOB_SHELL=true`).
    public var argv: [String]
    public var useShell: Bool
    public var workdirRoot: String
    /// Whether a job with a session runs in its session's lasting directory (`JOB_WORKSPACE`).
    public var workspace: WorkspaceMode
    /// Whether a job in a session workspace that is a git work tree gets a change summary in
    /// its result (`JOB_GIT_CHANGES`).
    public var gitChanges: Bool
    /// The longest one git command of the change summary may take before it is stopped.
    public var gitTimeout: Duration
    /// Applies to the per-attempt directory (a job without a session, the payload file); a
    /// session workspace is never removed after a job.
    public var keepWorkdir: KeepWorkdir
    /// Environment variables passed through from the worker, besides the safe base.
    public var environmentPassthrough: [String]
    public var timeout: Duration
    /// Time between SIGTERM and SIGKILL when a command must stop.
    public var killGrace: Duration
    public var outputLimitBytes: Int
    /// Exit statuses that fail the job at once, without retries (`JOB_PERMANENT_EXIT_CODES`):
    /// a command's way to say "retrying cannot help" (e.g. the prompt is unusable).
    public var permanentExitCodes: Set<Int32>
    /// Where the command runs: under bubblewrap (``JobSandbox``) or, when `nil`, as the worker's
    /// user with the host's files and network (`JOB_SANDBOX=none`).
    public var sandbox: JobSandbox?
    /// How each command's memory, CPU, processes and disk are bounded (and measured).
    public var limits: JobLimitEnforcement = .none
    /// The user commands run as when the worker runs as root (`JOB_USER`; `nil`: the worker's).
    public var user: JobUser?
    /// `worker-launch`, which starts a command inside its limits and as ``user`` (needed when
    /// either is set).
    public var launcher: JobLauncher?

    /// The largest `JOB_OUTPUT_LIMIT_BYTES`: standard output is stored as JSON, which escaping
    /// can make up to six times longer (`\u0001` for one byte), and must stay well below what
    /// the store takes in one value (PostgreSQL's `jsonb` about 255 MB): 16 MiB at most becomes
    /// 96 MiB, under the worker's own bound of ``JobOutcome/maximumResultBytes``.
    public static let maximumOutputLimitBytes = 16 << 20

    /// Variables every child gets from the worker's environment when set: nothing secret.
    public static let safeBaseEnvironment = ["PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "USER", "LOGNAME", "SHELL", "TERM"]

    public static var defaultWorkdirRoot: String {
        FileManager.default.temporaryDirectory.appendingPathComponent("mobvibe-worker-jobs").path
    }

    public init(
        command: String,
        useShell: Bool = false,
        workdirRoot: String = CommandHandlerConfiguration.defaultWorkdirRoot,
        workspace: WorkspaceMode = .job,
        gitChanges: Bool? = nil,
        gitTimeout: Duration = .seconds(60),
        keepWorkdir: KeepWorkdir = .never,
        environmentPassthrough: [String] = [],
        timeout: Duration = .seconds(900),
        killGrace: Duration = .seconds(10),
        outputLimitBytes: Int = 1_048_576,
        permanentExitCodes: Set<Int32> = [],
        sandbox: JobSandbox? = nil
    ) throws {
        self.command = command
        self.useShell = useShell
        if useShell {
            argv = ["/bin/sh", "-c", command]
        } else {
            argv = try ShellWords.split(command)
        }
        if argv.isEmpty { throw ShellWords.Error(description: "the command is empty") }
        self.workdirRoot = workdirRoot
        self.workspace = workspace
        self.gitChanges = gitChanges ?? (workspace == .session)
        self.gitTimeout = gitTimeout
        self.keepWorkdir = keepWorkdir
        self.environmentPassthrough = environmentPassthrough
        self.timeout = timeout
        self.killGrace = killGrace
        self.outputLimitBytes = outputLimitBytes
        self.permanentExitCodes = permanentExitCodes
        self.sandbox = sandbox
    }

    /// The program's full path: as given when it contains a `/`, otherwise looked up in `PATH`.
    public func resolvedProgram(path: String? = ProcessInfo.processInfo.environment["PATH"]) -> String? {
        Self.resolve(argv[0], path: path)
    }

    /// `git`'s full path in `PATH`, for the change summary.
    public static func resolvedGit(path: String? = ProcessInfo.processInfo.environment["PATH"]) -> String? {
        resolve("git", path: path)
    }

    private static func resolve(_ program: String, path: String?) -> String? {
        if program.contains("/") {
            guard FileManager.default.isExecutableFile(atPath: program) else { return nil }
            // Absolute: in a sandbox the command starts in another directory.
            return program.hasPrefix("/") ? program : URL(fileURLWithPath: program).standardizedFileURL.path
        }
        for directory in (path ?? "/usr/bin:/bin").split(separator: ":") {
            let candidate = "\(directory)/\(program)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}
