import Foundation
import Logging
import Subprocess
import Synchronization
import SystemPackage
import WorkerCore

/// Runs each job through a configured command (`JOB_HANDLER=command`, `JOB_COMMAND`).
///
/// - The prompt goes to the child's standard input byte for byte; `JOB_ID`, `SESSION_ID`,
///   `JOB_ATTEMPT`, `JOB_MAX_ATTEMPTS`, `JOB_QUEUE` and `JOB_PAYLOAD_FILE` (the payload as a
///   JSON file) are in its environment, which otherwise holds only a safe base and the names
///   in `JOB_ENV_PASSTHROUGH`: never the worker's secrets.
/// - Each job runs in a fresh directory under `JOB_WORKDIR_ROOT` or, with `JOB_WORKSPACE=session`,
///   in its session's lasting ``SessionWorkspace`` (locked for the turn, and summarised with
///   ``WorkspaceChanges`` when it is a git work tree); in its own session and process group; at the timeout or on cancellation the whole group gets SIGTERM, then
///   SIGKILL after the grace period, and no grandchild survives.
/// - Standard output and error are drained while the child runs; at most
///   `JOB_OUTPUT_LIMIT_BYTES` of each is kept. Exit 0 completes the job with standard output
///   (as JSON when it parses, else `{"stdout": ...}`); anything else fails the attempt.
public struct CommandHandler: JobHandler {
    public let configuration: CommandHandlerConfiguration
    private let baseEnvironment: [String: String]
    /// `git` for the change summary, looked up once in the children's `PATH`.
    private let git: String?
    /// Written into a session workspace's lock file, with the pid and the worker id.
    private let hostName: String
    /// The program's host path (absolute), mounted into the sandbox when outside its system
    /// directories.
    let program: String?

    /// - Parameter environment: the worker's environment, from which the safe base and the
    ///   passthrough names are taken.
    public init(configuration: CommandHandlerConfiguration, environment: [String: String] = ProcessInfo.processInfo.environment) {
        // The prompt is written to the command's standard input, and a command that exits or
        // closes it before reading everything makes that write raise SIGPIPE, whose default
        // action ends the process: the worker, or any other program (a test run) that runs
        // commands. Writes then fail with EPIPE instead, which the handler expects.
        signal(SIGPIPE, SIG_IGN)
        self.configuration = configuration
        var base: [String: String] = [:]
        for name in CommandHandlerConfiguration.safeBaseEnvironment + configuration.environmentPassthrough {
            if let value = environment[name] { base[name] = value }
        }
        if base["PATH"] == nil { base["PATH"] = "/usr/local/bin:/usr/bin:/bin" }
        self.baseEnvironment = base
        self.git = configuration.gitChanges ? CommandHandlerConfiguration.resolvedGit(path: base["PATH"]) : nil
        self.program = configuration.resolvedProgram(path: base["PATH"])
        var name = [CChar](repeating: 0, count: 256)
        self.hostName = gethostname(&name, name.count - 1) == 0 ? String(decoding: name.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self) : "unknown-host"
    }

    public func handle(_ claimed: ClaimedJob, context: JobContext) async throws -> String {
        let job = claimed.job
        // Per attempt: payload.json (and the change summary's scratch index), and the working
        // directory itself unless the job runs in its session's workspace.
        let attemptDirectory = URL(fileURLWithPath: configuration.workdirRoot)
            .appendingPathComponent("\(job.id.lowercasedText)-\(claimed.lease.attempt)-\(UUID().uuidString.prefix(6).lowercased())")
        let payloadFile = attemptDirectory.appendingPathComponent("payload.json")
        let sessionWorkspace = configuration.workspace == .session
            ? job.sessionID.map { SessionWorkspace(root: configuration.workdirRoot, sessionID: $0) }
            : nil
        let workdir = sessionWorkspace.map { URL(fileURLWithPath: $0.directory) } ?? attemptDirectory.appendingPathComponent("work")
        // With a disk limit, the sandbox's /tmp and home are directories here, measured with the
        // workspace, instead of tmpfs mounts the worker cannot see into.
        let scratch = configuration.sandbox != nil && configuration.limits.limits.diskBytes != nil
            ? (tmp: attemptDirectory.appendingPathComponent("tmp").path, home: attemptDirectory.appendingPathComponent("home").path)
            : nil
        // The change summary's git gets a folder of its own, not the attempt's: git runs what the
        // repository names (a filter) with its scratch writable, and the attempt's folder holds
        // what the sandbox binds next (payload.json, tmp, home), which bwrap resolves on the
        // host: a symlink put there by a filter would mount any host path into the job.
        let gitScratch = sessionWorkspace != nil && configuration.gitChanges && git != nil ? attemptDirectory.appendingPathComponent("git").path : nil
        let ownFolders = [scratch?.tmp, scratch?.home, gitScratch].compactMap { $0 }
        do {
            let created = sessionWorkspace == nil ? workdir : attemptDirectory
            try FileManager.default.createDirectory(at: created, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            for directory in ownFolders {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
            }
            try Data(job.payload.utf8).write(to: payloadFile)
            if let user = configuration.user {
                // The command's user makes its way to its own directories (the parents: search
                // only) and owns them; it cannot list the other jobs' directories. The attempt's
                // folder stays the worker's, search only for others: the worker writes in git's
                // scratch by path after the command, and a command that owned the folder
                // replaced that scratch with a symlink, so that root wrote (and deleted) a file
                // in any directory it named.
                Self.allowSearch(configuration.workdirRoot)
                guard chmod(attemptDirectory.path, 0o711) == 0, chmod(payloadFile.path, 0o600) == 0 else {
                    throw CommandFailure.workdir(path: attemptDirectory.path, reason: "cannot set its mode: \(String(cString: strerror(errno)))")
                }
                for path in [payloadFile.path] + (sessionWorkspace == nil ? [workdir.path] : []) + ownFolders {
                    try user.own(path)
                }
            }
        } catch let error as CommandFailure {
            throw error
        } catch {
            throw CommandFailure.workdir(path: workdir.path, reason: "\(error)")
        }
        var succeeded = false
        defer { cleanUp(attemptDirectory, succeeded: succeeded, logger: context.logger) }

        // Held for the whole turn, snapshots included; released (and the use recorded) however it ends.
        let holder = OrphanedCommand.holder(host: hostName, workerPID: getpid(), workerID: context.workerID)
        let lock = try await sessionWorkspace?.lock(holder: holder)
        defer {
            lock?.touch()
            lock?.release()
        }
        try sessionWorkspace?.admit(user: job.userID)
        if let sessionWorkspace {
            // As made (0700): an earlier turn's `chmod 000 /workspace` would otherwise make bwrap
            // (run as JOB_USER) fail to enter it before the command starts, every later turn a
            // worker fault, released and claimed again without end.
            guard chmod(sessionWorkspace.directory, 0o700) == 0 else {
                throw CommandFailure.workdir(path: sessionWorkspace.directory, reason: "cannot restore its mode: \(String(cString: strerror(errno)))")
            }
        }
        if let user = configuration.user, let sessionWorkspace {
            Self.allowSearch(SessionWorkspace.sessionsDirectory(root: configuration.workdirRoot))
            try user.own(sessionWorkspace.directory)
        }
        if let lock, let sessionWorkspace, let orphan = OrphanedCommand(note: lock.previousNote) {
            await orphan.stopIfLeftBehind(in: sessionWorkspace.directory, host: hostName, logger: context.logger)
        }
        var tracker: WorkspaceChangeTracker?
        if let sessionWorkspace, configuration.gitChanges {
            if let git, let gitScratch {
                tracker = await WorkspaceChangeTracker.begin(
                    directory: sessionWorkspace.directory, git: git, environment: baseEnvironment,
                    timeout: configuration.gitTimeout, scratch: gitScratch, sandbox: configuration.sandbox, user: configuration.user,
                    launcher: configuration.launcher ?? configuration.limits.launcher, limits: configuration.limits, logger: context.logger)
            } else {
                context.logger.warning("JOB_GIT_CHANGES is on but git is not in PATH: no change summary")
            }
        }

        var environment = baseEnvironment
        environment["JOB_ID"] = job.id.lowercasedText
        environment["SESSION_ID"] = job.sessionID?.lowercasedText ?? ""
        environment["JOB_ATTEMPT"] = String(claimed.lease.attempt)
        environment["JOB_MAX_ATTEMPTS"] = String(job.maxAttempts)
        environment["JOB_QUEUE"] = job.queue
        environment["JOB_PAYLOAD_FILE"] = payloadFile.path
        if let user = configuration.user {
            environment["USER"] = user.name
            environment["LOGNAME"] = user.name
            if configuration.sandbox == nil { environment["HOME"] = user.home }
        }
        if configuration.sandbox != nil {
            environment["JOB_PAYLOAD_FILE"] = JobSandbox.payloadPath
            if environment["TMPDIR"] != nil { environment["TMPDIR"] = "/tmp" }
            environment["PWD"] = JobSandbox.workspacePath
        }

        let run = try await execute(
            prompt: job.prompt, workdir: workdir.path, payloadFile: payloadFile.path, scratch: scratch, environment: environment,
            events: context.events, logger: context.logger
        ) { group in
            // Should this worker die, the session's next holder stops what the command left.
            lock?.rewriteNote(OrphanedCommand.note(holder: holder, processGroup: group))
        }
        var changes: WorkspaceChanges?
        if let tracker, !Task.isCancelled { changes = await tracker.finish(logger: context.logger) }
        if let limit = run.limit {
            Self.logChangesOfFailedAttempt(changes, logger: context.logger)
            throw CommandFailure.limitReached(limit, limit: Self.describe(limit, configuration.limits.limits), stderrTail: run.stderr.tailText)
        }
        switch run.status {
        case .exited(0):
            succeeded = true
            let result = Self.result(fromStandardOutput: run.stdout, lastObject: run.lastObject)
            return changes?.attached(to: result) ?? result
        case .exited(let code):
            Self.logChangesOfFailedAttempt(changes, logger: context.logger)
            if configuration.permanentExitCodes.contains(code) {
                throw CommandFailure.exitedPermanently(code: code, stderrTail: run.stderr.tailText)
            }
            throw CommandFailure.exited(code: code, stderrTail: run.stderr.tailText)
        case .signaled(let signal):
            Self.logChangesOfFailedAttempt(changes, logger: context.logger)
            if run.timedOut { throw CommandFailure.timedOut(after: configuration.timeout, stderrTail: run.stderr.tailText) }
            throw CommandFailure.signaled(signal: signal, stderrTail: run.stderr.tailText)
        }
    }

    /// The limit as configured, for `last_error`.
    static func describe(_ reason: JobFailureReason, _ limits: JobLimits) -> String {
        switch reason {
        case .outOfMemory: limits.memoryBytes.map { "JOB_MEMORY_LIMIT_MB=\($0 >> 20)" } ?? "memory"
        case .pidsLimit: limits.pids.map { "JOB_PIDS_LIMIT=\($0)" } ?? "processes"
        case .diskLimit: limits.diskBytes.map { "JOB_DISK_LIMIT_MB=\($0 >> 20)" } ?? "disk"
        default: reason.rawValue
        }
    }

    /// Adds search (not read) permission for everyone to `directory`, so that `JOB_USER` reaches
    /// the directories under it that are theirs.
    private static func allowSearch(_ directory: String) {
        var info = stat()
        guard stat(directory, &info) == 0, info.st_mode & 0o111 != 0o111 else { return }
        chmod(directory, (info.st_mode & 0o7777) | 0o111)
    }

    /// A failed attempt has no result to carry its summary, but its changes stay in the
    /// workspace for the next turn: the log says what they are.
    private static func logChangesOfFailedAttempt(_ changes: WorkspaceChanges?, logger: Logger) {
        guard let changes, changes.filesChanged > 0 else { return }
        logger.info("The failed attempt changed the session workspace", metadata: [
            "filesChanged": .stringConvertible(changes.filesChanged),
            "added": .array(changes.added.prefix(20).map { .string($0) }),
            "modified": .array(changes.modified.prefix(20).map { .string($0) }),
            "deleted": .array(changes.deleted.prefix(20).map { .string($0) }),
        ])
    }

    /// Standard output as the job's result: itself when it is JSON; else its last line, when
    /// that is a JSON object (the stream-json / JSONL convention: the final message is the
    /// result); else `{"stdout": ...}`.
    static func result(fromStandardOutput output: CappedOutput, lastObject: String? = nil) -> String {
        let trimmed = output.text.trimmingCharacters(in: .whitespacesAndNewlines)
        if output.truncatedBytes == 0, !trimmed.isEmpty,
           (try? JSONSerialization.jsonObject(with: Data(trimmed.utf8), options: [.fragmentsAllowed])) != nil {
            return trimmed
        }
        if let lastObject { return lastObject }
        let object = ["stdout": output.text]
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.withoutEscapingSlashes])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    private func cleanUp(_ directory: URL, succeeded: Bool, logger: Logger) {
        let keep: Bool
        switch configuration.keepWorkdir {
        case .never: keep = false
        case .always: keep = true
        case .onFailure: keep = !succeeded
        }
        if keep {
            logger.info("Kept the job's working directory", metadata: ["workdir": .string(directory.path)])
        } else if let error = TreeRemoval.remove(directory.path) {
            logger.warning("Could not remove the job's working directory", metadata: ["workdir": .string(directory.path), "error": "\(error)"])
        }
    }
}
