import Foundation
import Logging

/// What a session turn's command left running when its worker died (`kill -9`, a crash, the OOM
/// killer): the next turn of the session stops it before it starts.
///
/// A worker stops its command's process group before it releases the session workspace's lock,
/// so a free lock normally means nothing runs there. A worker that dies cannot: the kernel drops
/// its lock (the descriptor is not inherited by the command, see ``FileLock``), while the command
/// runs on in the workspace, and the session's next attempt, once the lease ran out, would share
/// the directory with it. So the lock's note names the command's process group once it started
/// (`host H, pid P, worker W, command group G`); the next holder reads it (``FileLock/previousNote``)
/// and, when the note is from this host and its worker is gone, stops the members of that group
/// still working in the workspace.
///
/// Limits: a command that left its process group (its own `setsid`) is not found, and a worker on
/// another host (shared storage) cannot see the processes; `JOB_SANDBOX=bubblewrap`
/// (`--die-with-parent`) ends a command with its worker in every case.
public struct OrphanedCommand: Sendable, Equatable {
    /// The host the command ran on, as `gethostname` says.
    public let host: String
    /// The worker process that started it.
    public let workerPID: pid_t
    /// The command's process group (its leader's pid: each command starts a session of its own).
    public let processGroup: pid_t

    /// The note a turn's worker writes when it takes the lock (the format ``init(note:)`` reads).
    public static func holder(host: String, workerPID: pid_t, workerID: String) -> String {
        "host \(host), pid \(workerPID), worker \(workerID)"
    }

    /// The note a holder writes once its command started.
    public static func note(holder: String, processGroup: pid_t) -> String {
        "\(holder), command group \(processGroup)"
    }

    /// Reads a lock file's note: `host H, pid P, ..., command group G`. `nil` when it names no
    /// command (the holder had not started one, or wrote another format).
    public init?(note: String) {
        guard note.hasPrefix("host "),
              let pidRange = note.range(of: ", pid "),
              let groupRange = note.range(of: ", command group ", options: .backwards)
        else { return nil }
        let pidDigits = note[pidRange.upperBound...].prefix { $0.isNumber }
        guard let pid = pid_t(pidDigits), let group = pid_t(note[groupRange.upperBound...]), group > 1 else { return nil }
        host = String(note[note.index(note.startIndex, offsetBy: 5)..<pidRange.lowerBound])
        workerPID = pid
        processGroup = group
    }

    /// Stops (SIGKILL) what is left of the command in `directory`, when the note is from
    /// `host` and its worker is gone; waits up to `patience` for those processes to end.
    ///
    /// - Returns: the pids found still running in the workspace (empty: nothing to stop).
    @discardableResult
    public func stopIfLeftBehind(in directory: String, host: String, patience: Duration = .seconds(5), logger: Logger) async -> [pid_t] {
        // A live worker stopped its command before it let the lock go (or it is this process).
        guard host == self.host, kill(workerPID, 0) != 0, errno == ESRCH else { return [] }
        let left = Self.members(of: processGroup, workingIn: directory)
        guard !left.isEmpty else { return [] }
        logger.warning("Stopping what a dead worker's command left running in the session workspace", metadata: [
            "workspace": .string(directory), "processGroup": .stringConvertible(processGroup),
            "pids": .array(left.map { .stringConvertible($0) }), "deadWorkerPid": .stringConvertible(workerPID),
        ])
        kill(-processGroup, SIGKILL)
        let deadline = ContinuousClock.now + patience
        while ContinuousClock.now < deadline, !Self.members(of: processGroup, workingIn: directory).isEmpty {
            try? await Task.sleep(for: .milliseconds(20))
        }
        return left
    }

    /// The processes of `group` whose working directory is `directory` or below (from `/proc`;
    /// zombies have none and are left out: they run nothing).
    ///
    /// `/proc/<pid>/cwd` names the real path, so `directory` is compared with symbolic links
    /// resolved: under a `JOB_WORKDIR_ROOT` reached through one (`/data` a link), no process
    /// matched, and a dead worker's command ran on beside the next turn.
    static func members(of group: pid_t, workingIn directory: String) -> [pid_t] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        let root: String
        if let resolved = realpath(directory, nil) {
            root = String(cString: resolved)
            free(resolved)
        } else {
            root = URL(fileURLWithPath: directory).standardizedFileURL.path
        }
        var found: [pid_t] = []
        for entry in entries {
            guard let pid = pid_t(entry), processGroup(of: pid) == group,
                  let cwd = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/cwd"),
                  cwd == root || cwd.hasPrefix(root + "/")
            else { continue }
            found.append(pid)
        }
        return found
    }

    /// The process group of `pid` (``ProcessStat``).
    static func processGroup(of pid: pid_t) -> pid_t? {
        ProcessStat(pid: pid)?.group
    }
}
