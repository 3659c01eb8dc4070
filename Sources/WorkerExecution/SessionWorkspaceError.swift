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
                + " (lock file \(lockFile)); two workers must never run one session's turns at once:"
                + " check that all workers sharing JOB_WORKDIR_ROOT use the same jobs table."
                + " The attempt will be retried"
        case .unusable(let path, let reason):
            "cannot prepare the session workspace \(path): \(reason)"
        }
    }
}
