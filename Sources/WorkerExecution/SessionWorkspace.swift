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
