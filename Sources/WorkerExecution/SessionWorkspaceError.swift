import Foundation
import WorkerCore

/// Why a job could not run in its session's workspace. A workspace in use defers the job (it
/// runs once the holder lets go, without using an attempt); one that cannot be prepared fails
/// the attempt only: the retry policy applies, as the cause (a full disk) may pass.
public enum SessionWorkspaceError: Error, Sendable, CustomStringConvertible, DeferredJobError, PermanentJobError {
    public var isDeferred: Bool {
        if case .inUse = self { return true }
        return false
    }

    public var retryAfter: Duration? { nil }

    /// Another user's workspace stays theirs, whatever the retries.
    public var isPermanent: Bool {
        if case .ownedByAnotherUser = self { return true }
        return false
    }

    /// Another process holds the workspace's lock: running here too would corrupt it.
    case inUse(sessionID: UUID, holder: String, lockFile: String)
    /// The workspace or its lock file cannot be created or locked.
    case unusable(path: String, reason: String)
    /// The workspace was made for another user's turns (or a backend's, `owner` nil).
    case ownedByAnotherUser(sessionID: UUID, owner: String)

    public var description: String {
        switch self {
        case .inUse(let session, let holder, let lockFile):
            "the workspace of session \(session.lowercasedText) is in use by "
                + (holder.isEmpty ? "another process" : holder)
                + " (lock file \(lockFile)), and two turns of one session must never run in it at once."
                + " Most likely that worker still runs an earlier attempt of this turn (its lease lapsed, the job was rescued,"
                + " and it stops at its next lease renewal: look for `Lease renewal failed` in its log);"
                + " on shared storage, a host that died holding the lock until the server lets it go;"
                + " or workers sharing JOB_WORKDIR_ROOT with different jobs tables. The turn runs once the workspace is free, without using an attempt"
        case .unusable(let path, let reason):
            "cannot prepare the session workspace \(path): \(reason)"
        case .ownedByAnotherUser(let session, let owner):
            "the workspace of session \(session.lowercasedText) belongs to \(owner == SessionWorkspace.backendOwner ? "a backend's turns" : "another user")"
                + " (its earlier turns' rows may be gone, the workspace not): a user's turn never runs in another's files. Start a new session"
        }
    }
}
