import Foundation
import Logging
import WorkerCore

/// Removes session workspaces nobody has used for the retention time
/// (`WORKSPACE_RETENTION_HOURS`), so that finished sessions do not fill the disk.
///
/// A workspace is idle when its lock file (touched at the end of each turn) or, without one,
/// its directory was last modified longer ago than the retention. An idle workspace is still
/// kept when the store says its session has a turn pending or running (a retry waiting for its
/// time, a job enqueued a moment ago), or when its lock is held (a turn started meanwhile).
/// Removal happens under the workspace's lock, by renaming it to a trash name first: a turn
/// that starts later finds no directory and begins afresh; none ever loses its files midway.
///
/// Several workers may run one: `sessions/.sweep.lock` lets one sweep at a time, the others
/// skip that round.
public struct SessionWorkspaceSweeper: Sendable {
    /// What one round did.
    public struct Report: Sendable, Equatable {
        /// Another worker was sweeping: this round did nothing.
        public var skipped = false
        public var removed: [UUID] = []
        /// Idle, but the store says the session has a turn pending or running.
        public var keptBusy: [UUID] = []
        /// Idle, but another process holds its lock.
        public var keptLocked: [UUID] = []
    }

    public let root: String
    public let retention: Duration
    private let store: any JobStore
    /// Written into the lock files it takes, so a turn that finds one held names the sweeper.
    private let holder: String
    private let logger: Logger

    public init(root: String, retention: Duration, store: any JobStore, holder: String, logger: Logger) {
        self.root = root
        self.retention = retention
        self.store = store
        self.holder = holder
        self.logger = logger
    }

    static let trashPrefix = ".trash-"
    static let sweepLockName = ".sweep.lock"

    /// One round; `now` is the time idleness is measured against.
    ///
    /// - Throws: when the store cannot say which sessions are busy (nothing is removed then).
    public func sweep(now: Date = Date()) async throws -> Report {
        var report = Report()
        let sessions = SessionWorkspace.sessionsDirectory(root: root)
        guard FileManager.default.fileExists(atPath: sessions) else { return report }
        let sweepLock: FileLock
        do {
            sweepLock = try await FileLock.acquire(path: "\(sessions)/\(Self.sweepLockName)", holder: holder, patience: .milliseconds(200))
        } catch {
            if case .held = error {
                report.skipped = true
                return report
            }
            throw error
        }
        defer { sweepLock.release() }

        let entries = (try? FileManager.default.contentsOfDirectory(atPath: sessions)) ?? []
        // A round that stopped between renaming and deleting left its trash: finish it.
        for entry in entries where entry.hasPrefix(Self.trashPrefix) {
            TreeRemoval.remove("\(sessions)/\(entry)")
        }
        var idle: [UUID] = []
        for session in Self.sessionIDs(in: entries) {
            let workspace = SessionWorkspace(root: root, sessionID: session)
            if let lastUse = Self.lastUse(of: workspace), now.timeIntervalSince(lastUse) >= retention.inSeconds {
                idle.append(session)
            }
        }
        guard !idle.isEmpty else { return report }

        var busy = Set<UUID>()
        for start in stride(from: 0, to: idle.count, by: 500) {
            busy.formUnion(try await store.sessionsWithUnfinishedTurns(among: Array(idle[start..<min(start + 500, idle.count)])))
        }
        // Renamed workspaces, deleted once the round has decided about every session: deleting a
        // large tree takes a while, and each decision is made under the workspace's lock, with
        // the store asked again then (a turn enqueued meanwhile keeps its workspace).
        var trash: [String] = []
        defer {
            for path in trash {
                if let error = TreeRemoval.remove(path) {
                    logger.warning("Could not remove an idle session workspace's files; the next round tries again", metadata: [
                        "path": .string(path), "error": "\(error)",
                    ])
                }
            }
        }
        for session in idle {
            if Task.isCancelled { break }
            if busy.contains(session) {
                report.keptBusy.append(session)
                continue
            }
            let workspace = SessionWorkspace(root: root, sessionID: session)
            switch await remove(workspace, idleSince: now.addingTimeInterval(-retention.inSeconds)) {
            case .removed(let renamed):
                report.removed.append(session)
                if let renamed { trash.append(renamed) }
            case .locked:
                report.keptLocked.append(session)
            case .busy:
                report.keptBusy.append(session)
            case .usedMeanwhile:
                break
            case .failed(let reason):
                logger.warning("Could not remove an idle session workspace", metadata: ["workdir": .string(workspace.directory), "error": .string(reason)])
            }
        }
        if !report.removed.isEmpty {
            logger.info("Removed idle session workspaces", metadata: [
                "sessions": .array(report.removed.map { .string($0.lowercasedText) }),
                "idleHours": .stringConvertible(retention.inSeconds / 3600),
            ])
        }
        return report
    }

    private enum Removal {
        /// Removed: renamed to this trash folder (`nil`: there was no folder, only a lock file).
        case removed(String?)
        case locked, busy, usedMeanwhile
        case failed(String)
    }

    private func remove(_ workspace: SessionWorkspace, idleSince threshold: Date) async -> Removal {
        let lock: FileLock
        do {
            lock = try await FileLock.acquire(path: workspace.lockFile, holder: "\(holder) (removing the idle workspace)", patience: .milliseconds(200))
        } catch {
            if case .held = error { return .locked }
            return .failed(error.description)
        }
        defer { lock.release() }
        // A turn that started and ended since the idle check touched the lock file (its time as
        // the lock was taken: read before, a turn ending in between went unseen).
        guard lock.previousModification <= threshold else { return .usedMeanwhile }
        // Asked again under the lock: a turn enqueued since the round asked waits for this
        // workspace (its worker blocks on the lock, and finds the folder gone if this goes on).
        do {
            if try await !store.sessionsWithUnfinishedTurns(among: [workspace.sessionID]).isEmpty { return .busy }
        } catch {
            return .failed("the store could not say whether the session has turns waiting: \(error)")
        }
        let trash = URL(fileURLWithPath: workspace.directory).deletingLastPathComponent()
            .appendingPathComponent("\(Self.trashPrefix)\(workspace.sessionID.lowercasedText)-\(UUID().uuidString.prefix(8))").path
        if FileManager.default.fileExists(atPath: workspace.directory) {
            do {
                try FileManager.default.moveItem(atPath: workspace.directory, toPath: trash)
            } catch {
                return .failed("\(error)")
            }
        }
        // Unlinked while held: a turn waiting on this file fails (it is held) and a later one
        // creates a new lock file (``FileLock`` checks it locked the file that is linked).
        unlink(workspace.ownerFile)
        unlink(workspace.lockFile)
        lock.release()
        return .removed(FileManager.default.fileExists(atPath: trash) ? trash : nil)
    }

    /// The sessions that have a directory or a lock file in `entries`.
    static func sessionIDs(in entries: [String]) -> [UUID] {
        var ids = Set<UUID>()
        for entry in entries where !entry.hasPrefix(".") {
            let name = entry.hasSuffix(".lock") ? String(entry.dropLast(5)) : entry
            if name.count == 36, let id = UUID(uuidString: name), id.lowercasedText == name { ids.insert(id) }
        }
        return ids.sorted { $0.uuidString < $1.uuidString }
    }

    /// The lock file's modification time (touched at each turn's end), else the directory's.
    static func lastUse(of workspace: SessionWorkspace) -> Date? {
        for path in [workspace.lockFile, workspace.directory] {
            if let date = (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date { return date }
        }
        return nil
    }
}
