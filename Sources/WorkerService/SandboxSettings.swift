import Foundation
import WorkerExecution

/// How job commands are to be confined (`JOB_SANDBOX`, `JOB_NETWORK`, `JOB_SANDBOX_RO_PATHS`,
/// `JOB_SANDBOX_RW_PATHS`, `JOB_SANDBOX_TMP_MB`), and the start-up check that decides it
/// (docs/WORKER_SERVICE.md, "The sandbox").
public struct SandboxSettings: Sendable, Hashable {
    /// What `JOB_SANDBOX` asks for.
    public enum Request: String, Sendable, CaseIterable {
        /// Unset: bubblewrap when it works here; else, in development, none (with a warning),
        /// and in production no start.
        case automatic
        case bubblewrap
        case none
    }

    public var request: Request
    public var network: JobSandbox.Network
    public var readOnlyPaths: [String]
    public var writablePaths: [String]
    public var tmpBytes: Int
    /// Each command's memory, CPU, process and disk limits (`JOB_MEMORY_LIMIT_MB`,
    /// `JOB_CPU_LIMIT`, `JOB_PIDS_LIMIT`, `JOB_DISK_LIMIT_MB`; unset: none).
    public var limits: JobLimits
    /// The user commands run as when the worker is root (`JOB_USER`).
    public var user: JobUser?

    /// What the start-up check decided: the sandbox to use (`nil`: none), and one line saying
    /// so for the log and `config check`.
    public struct Decision: Sendable {
        public var sandbox: JobSandbox?
        public var summary: String
        /// Set when commands run unconfined although nobody asked for it (a development machine
        /// without a working bwrap): logged as a warning.
        public var warning: String?
    }

    static func parse(_ values: ConfigValues) throws -> SandboxSettings {
        SandboxSettings(
            request: try values.choice("JOB_SANDBOX", default: .automatic),
            network: try values.choice("JOB_NETWORK", default: .none),
            readOnlyPaths: try paths("JOB_SANDBOX_RO_PATHS", values.raw("JOB_SANDBOX_RO_PATHS")),
            writablePaths: try paths("JOB_SANDBOX_RW_PATHS", values.raw("JOB_SANDBOX_RW_PATHS")),
            tmpBytes: try values.integer("JOB_SANDBOX_TMP_MB", default: 1024, range: 1...1_048_576) << 20,
            limits: JobLimits(
                memoryBytes: values.raw("JOB_MEMORY_LIMIT_MB") == nil ? nil : try values.integer("JOB_MEMORY_LIMIT_MB", default: 0, range: 16...1_048_576) << 20,
                cpuCores: try cores(values.raw("JOB_CPU_LIMIT")),
                pids: values.raw("JOB_PIDS_LIMIT") == nil ? nil : try values.integer("JOB_PIDS_LIMIT", default: 0, range: 8...4_194_304),
                diskBytes: values.raw("JOB_DISK_LIMIT_MB") == nil ? nil : try values.integer("JOB_DISK_LIMIT_MB", default: 0, range: 1...16_777_216) << 20
            ),
            user: try user(values.raw("JOB_USER"))
        )
    }

    /// `JOB_USER`: a user this machine knows, by name or number, other than root (naming the
    /// process's own user is allowed and changes nothing). That only a root worker can become it
    /// is checked by ``checkForCommands(uid:)``, when commands are to run.
    private static func user(_ text: String?, uid: uid_t = geteuid()) throws -> JobUser? {
        guard let text = text?.trimmingCharacters(in: .whitespaces), !text.isEmpty else { return nil }
        guard let user = JobUser.resolve(text) else {
            throw ConfigurationError(variable: "JOB_USER", value: text, expected: "a user name in /etc/passwd, or UID or UID:GID")
        }
        if user.uid == uid { return nil }
        guard user.uid != 0 else {
            throw ConfigurationError(variable: "JOB_USER", value: text, expected: "a user other than root")
        }
        return user
    }

    /// What only a process that runs job commands needs of this machine (`worker run`, `worker
    /// config check`): to be root when `JOB_USER` names another user, and the sandbox's paths to
    /// exist. Not checked at parse time, which every command does: an operator's `worker stats`,
    /// run as themselves beside a root worker's `.env` with `JOB_USER`, was refused for it.
    /// - Throws: ``ConfigurationError`` naming the variable.
    public func checkForCommands(uid: uid_t = geteuid()) throws {
        if let user, uid != 0 {
            throw ConfigurationError(
                variable: "JOB_USER", value: user.name,
                expected: "unset: only a worker running as root can run commands as another user (this one runs as uid \(uid))")
        }
        for (name, list) in [("JOB_SANDBOX_RO_PATHS", readOnlyPaths), ("JOB_SANDBOX_RW_PATHS", writablePaths)] {
            for path in list where !FileManager.default.fileExists(atPath: path) {
                throw ConfigurationError(variable: name, value: list.joined(separator: ","), expected: "paths that exist (\(path) does not)")
            }
        }
    }

    private static func cores(_ text: String?) throws -> Double? {
        guard let text else { return nil }
        guard let cores = Double(text), cores >= 0.01, cores <= 1024 else {
            throw ConfigurationError(variable: "JOB_CPU_LIMIT", value: text, expected: "CPU cores per command, from 0.01 to 1024 (e.g. 1.5)")
        }
        return cores
    }

    /// Decides how each attempt's limits are enforced here (control groups, else rlimits) and
    /// sets up this worker's control group.
    /// - Throws: ``ConfigurationError`` when a limit is set that cannot be enforced here (a limit
    ///   asked for is never silently dropped).
    public func prepareLimits(launcher: JobLauncher? = JobLauncher.locate()) throws -> JobLimitEnforcement {
        do {
            return try JobLimitEnforcement.prepare(
                limits: limits, name: "mobvibe-worker-\(getpid())", launcher: launcher, commandUserID: user?.uid ?? getuid())
        } catch {
            throw ConfigurationError(
                variable: error.variable, value: "(set)",
                expected: "limits this machine can enforce: \(error.reason); unset the JOB_*_LIMIT variables to run without them")
        }
    }

    /// A comma-separated list of absolute paths (that they exist: ``checkForCommands(uid:)``).
    private static func paths(_ name: String, _ text: String?) throws -> [String] {
        guard let text, !text.trimmingCharacters(in: .whitespaces).isEmpty else { return [] }
        let paths = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        for path in paths {
            guard path.hasPrefix("/"), !path.split(separator: "/").contains("..") else {
                throw ConfigurationError(variable: name, value: text, expected: "comma-separated absolute paths (\(path) is not one)")
            }
        }
        return paths
    }

    /// Decides at start-up, with a real trial run of the sandbox, how commands will run.
    /// - Throws: ``ConfigurationError`` when bubblewrap was asked for, or is needed (production,
    ///   `JOB_SANDBOX` unset), and does not work here.
    public func decide(environment: AppEnvironment, path: String? = ProcessInfo.processInfo.environment["PATH"]) async throws -> Decision {
        if request == .none {
            return Decision(sandbox: nil, summary: "none (JOB_SANDBOX=none: commands run as the worker's user, with its files and network)")
        }
        let problem: String
        if let bwrap = JobSandbox.locate(path: path) {
            var sandbox = JobSandbox(bwrap: bwrap, network: network, readOnlyPaths: readOnlyPaths, writablePaths: writablePaths, tmpBytes: tmpBytes)
            guard let failure = await sandbox.trial(user: user) else {
                return Decision(sandbox: sandbox, summary: "bubblewrap (\(bwrap), trial run ok; network \(network.rawValue))")
            }
            // worker-launch inside may be what failed (JOB_USER cannot read it where it lies):
            // the sandbox without it still confines, only its start failures then count as
            // the jobs'.
            sandbox.startsThroughLauncher = false
            if await sandbox.trial(user: user) == nil {
                return Decision(
                    sandbox: sandbox, summary: "bubblewrap (\(bwrap), trial run ok without worker-launch inside; network \(network.rawValue))",
                    warning: "worker-launch cannot start commands inside the sandbox (\(failure)): commands start without it, and a sandbox that fails to start one counts as the job's failure, not this worker's. Put worker-launch where JOB_USER can read it (the image has it in /usr/local/bin)")
            }
            problem = "the trial run failed: \(failure)"
        } else {
            problem = "bwrap was not found in PATH (Debian: apt-get install bubblewrap)"
        }
        let remedy = "a working bubblewrap sandbox: \(problem). Fix it (in a container: allow user namespaces, see docs/WORKER_SERVICE.md, \"The sandbox\"), or set JOB_SANDBOX=none to run commands unconfined"
        if request == .bubblewrap || environment == .production {
            throw ConfigurationError(variable: "JOB_SANDBOX", value: request.rawValue, expected: remedy)
        }
        return Decision(
            sandbox: nil, summary: "none (\(problem))",
            warning: "Commands run WITHOUT a sandbox (development only; production refuses to start): \(problem)")
    }
}
