import Foundation

/// Why a job could not run in its session's workspace. Both cases fail the attempt only: the
/// retry policy applies, as the cause (another process still using it, a full disk) may pass.
public enum SessionWorkspaceError: Error, Sendable, CustomStringConvertible {
    /// Another process holds the workspace's lock: running here too would corrupt it.
    case inUse(sessionID: UUID, holder: String, lockFile: String)
    /// The workspace or its lock file cannot be created or locked.
    case unusable(path: String, reason: String)

    public var description: String {
        switch self {
        case .inUse(let session, let holder, let lockFile):
            "the workspace of session \(session.lowercasedText) is in use by "
                + (holder.isEmpty ? "another process" : holder)
                + " (lock file \(lockFile)), and two turns of one session must never run in it at once."
                + " Most likely that worker still runs an earlier attempt of this turn (its lease lapsed, the job was rescued,"
                + " and it stops at its next lease renewal: look for `Lease renewal failed` in its log);"
                + " on shared storage, a host that died holding the lock until the server lets it go;"
                + " or workers sharing JOB_WORKDIR_ROOT with different jobs tables. The attempt will be retried"
        case .unusable(let path, let reason):
            "cannot prepare the session workspace \(path): \(reason)"
        }
    }
}
