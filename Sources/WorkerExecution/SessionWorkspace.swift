import Foundation

/// The lasting directory of one coding session, `<JOB_WORKDIR_ROOT>/sessions/<session id>`,
/// where each of its turns runs and finds what the earlier turns left.
///
/// Beside it, `sessions/<session id>.lock` is held (`flock`) for the whole of a turn and names
/// its holder. The store already runs one turn of a session at a time; the lock is the defence
/// when that promise does not hold (two jobs tables, or workers pointed at different databases,
/// sharing one `JOB_WORKDIR_ROOT`): the second turn fails with the holder named instead of
/// running in a directory another process is changing. Its modification time, touched when a
/// turn ends, is the workspace's last use, which ``SessionWorkspaceSweeper`` reads.
public struct SessionWorkspace: Sendable, Hashable {
    public let sessionID: UUID
    /// The directory the command runs in.
    public let directory: String
    /// The lock file beside it (outside the directory, so the command never sees or removes it).
    public let lockFile: String
    /// Whose turns the workspace holds, beside it: the user id of the session's first turn, or
    /// ``backendOwner``. The store's rows say the same only until retention deletes them, and
    /// the workspace outlives them (`WORKSPACE_RETENTION_HOURS`).
    public let ownerFile: String
    /// The owner of a workspace whose first turn had no user (a backend's).
    public static let backendOwner = "backend"

    /// `<root>/sessions`: every session workspace and lock file, and the sweeper's lock.
    public static func sessionsDirectory(root: String) -> String {
        URL(fileURLWithPath: root).appendingPathComponent("sessions").path
    }

    public init(root: String, sessionID: UUID) {
        self.sessionID = sessionID
        let sessions = URL(fileURLWithPath: Self.sessionsDirectory(root: root))
        let name = sessionID.lowercasedText
        directory = sessions.appendingPathComponent(name).path
        lockFile = sessions.appendingPathComponent("\(name).lock").path
        ownerFile = sessions.appendingPathComponent("\(name).owner").path
    }

    /// Records `user` as the workspace's owner on its first turn, or checks that a user's turn
    /// is the owner's: a turn of another user never runs in it, nor a user's in a backend's. A
    /// backend's turn (`user` nil) may run in any. Call it holding the workspace's lock.
    public func admit(user: UUID?) throws(SessionWorkspaceError) {
        let recorded = (try? String(contentsOfFile: ownerFile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        guard let recorded, !recorded.isEmpty else {
            do {
                try (user?.lowercasedText ?? Self.backendOwner).write(toFile: ownerFile, atomically: true, encoding: .utf8)
            } catch {
                throw .unusable(path: ownerFile, reason: "\(error)")
            }
            return
        }
        if let user, recorded != user.lowercasedText { throw .ownedByAnotherUser(sessionID: sessionID, owner: recorded) }
    }

    /// Locks the workspace for one turn, creating it on the session's first turn.
    ///
    /// Release the lock when the turn is over (``FileLock/touch()`` first, to record the use).
    /// - Parameter holder: written into the lock file, shown to a process that finds it held.
    /// - Throws: ``SessionWorkspaceError/inUse(sessionID:holder:lockFile:)`` when another
    ///   process holds it.
    public func lock(holder: String) async throws(SessionWorkspaceError) -> FileLock {
        let sessions = (directory as NSString).deletingLastPathComponent
        do {
            try FileManager.default.createDirectory(atPath: sessions, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw .unusable(path: sessions, reason: "\(error)")
        }
        let lock: FileLock
        do {
            lock = try await FileLock.acquire(path: lockFile, holder: holder, patience: .milliseconds(500))
        } catch {
            switch error {
            case .held(_, let holder): throw .inUse(sessionID: sessionID, holder: holder, lockFile: lockFile)
            case .system: throw .unusable(path: lockFile, reason: error.description)
            }
        }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            lock.release()
            throw .unusable(path: directory, reason: "\(error)")
        }
        lock.touch()
        return lock
    }
}
