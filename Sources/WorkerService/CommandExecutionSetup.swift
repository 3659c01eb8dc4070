import Foundation
import Logging
import WorkerExecution

/// What `JOB_COMMAND` runs with, decided at start-up: the sandbox, the limits, `worker-launch`,
/// and what the operator should hear about them. Made the same way by `worker run` and by
/// `worker config check`: the check once left out the workspace root's and `JOB_USER`'s checks,
/// and passed configurations that `run` then refused.
public struct CommandExecutionSetup: Sendable {
    public var sandbox: JobSandbox?
    public var limits: JobLimitEnforcement
    public var launcher: JobLauncher?
    /// One line on the sandbox (``JobSandbox`` trial's summary).
    public var sandboxSummary: String
    /// What the operator is told at start-up, in order, and at which level.
    public var notes: [(level: Logger.Level, message: String)]

    /// Decides it all for `configuration`'s command.
    /// - Throws: ``ConfigurationError`` or ``JobLauncherError`` naming what to change.
    public static func prepare(_ configuration: WorkerConfiguration, command: CommandHandlerConfiguration) async throws -> CommandExecutionSetup {
        try configuration.sandbox.checkForCommands()
        var notes: [(level: Logger.Level, message: String)] = []
        // The default, in the shared /tmp, must be the worker's own: anyone may make it first.
        // A folder the operator chose (a Kubernetes emptyDir is mode 2777, a network volume
        // may belong to another uid) is theirs to judge: a warning.
        let isDefault = command.workdirRoot == CommandHandlerConfiguration.defaultWorkdirRoot
        if let problem = WorkdirRoot.problem(at: command.workdirRoot, followingSymlink: !isDefault) {
            if isDefault {
                throw ConfigurationError(
                    variable: "JOB_WORKDIR_ROOT", value: "(unset: \(command.workdirRoot))",
                    expected: "the default folder to be the worker's own, which no other user may write; it \(problem). Remove it, or set JOB_WORKDIR_ROOT to a folder of the worker's")
            }
            notes.append((.warning, "JOB_WORKDIR_ROOT \(problem): another user of this machine could redirect the worker's file operations there (\(command.workdirRoot))"))
        }
        let limits = try configuration.sandbox.prepareLimits()
        notes.append((.info, "Job limits: \(limits.limits.isEmpty ? "none (no JOB_*_LIMIT set); attempts' CPU time and peak memory not measured" : limits.summary)"))
        var launcher: JobLauncher?
        if let user = configuration.sandbox.user {
            launcher = limits.launcher ?? JobLauncher.locate()
            guard launcher != nil else {
                throw ConfigurationError(
                    variable: "JOB_USER", value: user.name,
                    expected: "unset, or worker-launch beside the worker binary or in PATH (it becomes the user before the command starts; swift build --product worker-launch)")
            }
            notes.append((.info, "Job user: commands run as \(user.name) (uid \(user.uid), gid \(user.gid))"))
        }
        let decision = try await configuration.sandbox.decide(environment: configuration.environment)
        if decision.sandbox != nil, launcher == nil {
            // Inside the sandbox, worker-launch tells a sandbox that failed to start from a
            // command that failed (the trial ran it there).
            launcher = limits.launcher ?? JobLauncher.locate()
            if launcher == nil {
                notes.append((.warning, "worker-launch was not found: a sandbox that fails to start a command will count as the job's failure, not this worker's (swift build --product worker-launch)"))
            }
        }
        // Whatever starts commands through worker-launch outside the sandbox (limits,
        // JOB_USER, a sandbox started without it inside) needs its `--announce`.
        for outer in Set([launcher, limits.launcher].compactMap { $0 }) {
            if let problem = await outer.check() { throw JobLauncherError(path: outer.path, problem: problem) }
        }
        if let warning = decision.warning {
            notes.append((.warning, warning))
        } else {
            notes.append((decision.sandbox == nil ? .warning : .info, "Job sandbox: \(decision.summary)"))
        }
        if decision.sandbox == nil, getuid() == 0, configuration.sandbox.user == nil {
            notes.append((.warning, "Commands run as root with no sandbox: a job's command can read and change everything on this machine"))
        }
        return CommandExecutionSetup(sandbox: decision.sandbox, limits: limits, launcher: launcher, sandboxSummary: decision.summary, notes: notes)
    }
}
