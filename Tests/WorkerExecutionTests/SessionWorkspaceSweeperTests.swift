import Foundation
import Logging
import Synchronization
import Testing
import WorkerCore
import WorkerSQLite
import WorkerTestSupport
@testable import WorkerExecution

/// The sweeper on real directories, against a real SQLite store.
@Suite("SessionWorkspaceSweeper")
struct SessionWorkspaceSweeperTests {
    /// A workspace with one file, last used `age` ago (its lock file's time).
    static func makeWorkspace(_ fixture: WorkspaceFixture, session: UUID, age: TimeInterval) async throws -> SessionWorkspace {
        let workspace = fixture.workspace(session)
        let lock = try await workspace.lock(holder: "test")
        lock.release()
        _ = FileManager.default.createFile(atPath: workspace.directory + "/file.txt", contents: Data("x".utf8))
        try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-age)], ofItemAtPath: workspace.lockFile)
        return workspace
    }

    static func sweeper(_ fixture: WorkspaceFixture, store: any JobStore) -> SessionWorkspaceSweeper {
        SessionWorkspaceSweeper(root: fixture.root, retention: .seconds(3600), store: store, holder: "host test, pid \(getpid()), sweeping", logger: Logger(label: "test"))
    }

    @Test("removes an idle workspace; keeps a busy one (a pending turn), a locked one and a recent one")
    func removesOnlyIdleFreeWorkspaces() async throws {
        try await withTemporarySQLiteStore { store in
            try await WorkspaceFixture.with { fixture in
                let idle = try await Self.makeWorkspace(fixture, session: UUID(), age: 7200)
                let busy = try await Self.makeWorkspace(fixture, session: UUID(), age: 7200)
                let locked = try await Self.makeWorkspace(fixture, session: UUID(), age: 7200)
                let recent = try await Self.makeWorkspace(fixture, session: UUID(), age: 60)
                let turn = try #require(try await store.enqueue([NewJob(prompt: "next turn", sessionID: busy.sessionID)]).first)
                // Locked by "another worker" (any open file: flock does not care which process).
                let held = try FileLock.acquire(path: locked.lockFile, holder: "host other, pid 1")
                defer { held.release() }
                try FileManager.default.setAttributes([.modificationDate: Date().addingTimeInterval(-7200)], ofItemAtPath: locked.lockFile)

                let report = try await Self.sweeper(fixture, store: store).sweep()
                #expect(report.removed == [idle.sessionID])
                #expect(report.keptBusy == [busy.sessionID])
                #expect(report.keptLocked == [locked.sessionID])
                #expect(!report.skipped)
                #expect(!FileManager.default.fileExists(atPath: idle.directory) && !FileManager.default.fileExists(atPath: idle.lockFile))
                for kept in [busy, locked, recent] {
                    #expect(FileManager.default.fileExists(atPath: kept.directory + "/file.txt"), "\(kept.sessionID) was removed")
                }
                let left = try FileManager.default.contentsOfDirectory(atPath: SessionWorkspace.sessionsDirectory(root: fixture.root))
                #expect(!left.contains { $0.hasPrefix(".trash-") }, "no trash left: \(left)")

                // The busy session's turn is over (cancelled): its workspace goes in the next round.
                _ = try await store.cancel(id: turn)
                let next = try await Self.sweeper(fixture, store: store).sweep()
                #expect(next.removed == [busy.sessionID])
                #expect(!FileManager.default.fileExists(atPath: busy.directory))
            }
        }
    }

    @Test("a turn enqueued after the round found its session idle keeps the workspace: the store is asked again under the workspace's lock")
    func turnEnqueuedDuringTheRound() async throws {
        try await withTemporarySQLiteStore { sqlite in
            try await WorkspaceFixture.with { fixture in
                let first = try await Self.makeWorkspace(fixture, session: UUID(), age: 7200)
                let second = try await Self.makeWorkspace(fixture, session: UUID(), age: 7200)
                let enqueued = Mutex(false)
                // Right after the round's first question (both idle), a turn of the second arrives.
                let store = InstrumentedJobStore(sqlite, afterUnfinishedTurns: { sessions, _ in
                    let first = enqueued.withLock { done in
                        defer { done = true }
                        return !done
                    }
                    guard sessions.count == 2, first else { return }
                    _ = try await sqlite.enqueue([NewJob(prompt: "late turn", sessionID: second.sessionID)])
                })
                let report = try await Self.sweeper(fixture, store: store).sweep()
                #expect(report.removed == [first.sessionID])
                #expect(report.keptBusy == [second.sessionID])
                #expect(FileManager.default.fileExists(atPath: second.directory + "/file.txt"), "the late turn's workspace was removed")
            }
        }
    }

    @Test("a lock says when its file was last written before it was taken (a turn's end), read under the lock")
    func previousModification() async throws {
        try await WorkspaceFixture.with { fixture in
            let workspace = try await Self.makeWorkspace(fixture, session: UUID(), age: 7200)
            let lock = try FileLock.acquire(path: workspace.lockFile, holder: "sweeper")
            defer { lock.release() }
            #expect(abs(lock.previousModification.timeIntervalSinceNow + 7200) < 5)
        }
    }

    @Test("one sweeper at a time: while another holds sessions/.sweep.lock, a round does nothing")
    func oneSweeperAtATime() async throws {
        try await withTemporarySQLiteStore { store in
            try await WorkspaceFixture.with { fixture in
                let idle = try await Self.makeWorkspace(fixture, session: UUID(), age: 7200)
                let other = try FileLock.acquire(path: SessionWorkspace.sessionsDirectory(root: fixture.root) + "/.sweep.lock", holder: "other sweeper")
                let skipped = try await Self.sweeper(fixture, store: store).sweep()
                #expect(skipped.skipped && skipped.removed.isEmpty)
                #expect(FileManager.default.fileExists(atPath: idle.directory))
                other.release()
                let swept = try await Self.sweeper(fixture, store: store).sweep()
                #expect(swept.removed == [idle.sessionID], "\(swept)")
            }
        }
    }

    @Test("a turn after the sweep starts afresh in a new workspace")
    func turnAfterSweep() async throws {
        try await withTemporarySQLiteStore { store in
            try await WorkspaceFixture.with { fixture in
                let session = UUID()
                let workspace = try await Self.makeWorkspace(fixture, session: session, age: 7200)
                #expect(try await Self.sweeper(fixture, store: store).sweep().removed == [session])
                #expect(!FileManager.default.fileExists(atPath: workspace.directory))
                let handler = try fixture.handler(#"printf '{"entries":%s}' "$(ls -A | wc -l)""#)
                let result = try WorkspaceFixture.object(try await handler.handle(WorkspaceFixture.claimed(session: session), context: WorkspaceFixture.context()))
                #expect(result["entries"] as? Int == 0)
                #expect(FileManager.default.fileExists(atPath: workspace.directory) && FileManager.default.fileExists(atPath: workspace.lockFile))
            }
        }
    }
}
