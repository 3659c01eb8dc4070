import Foundation
import Logging
import Testing
import WorkerCore
import WorkerExecution
import WorkerTestSupport
@testable import WorkerService

/// The service `worker run` starts with `JOB_WORKSPACE=session`: the sweeper, round after round.
@Suite("SessionWorkspaceRetention")
struct SessionWorkspaceRetentionTests {
    @Test("sweeps round after round while it runs: a workspace that goes idle later is removed by a later round; a busy one stays")
    func sweepsEveryRound() async throws {
        try await withTemporarySQLiteStore { store in
            let root = FileManager.default.temporaryDirectory.appendingPathComponent("retention-\(UUID().uuidString)").path
            defer { try? FileManager.default.removeItem(atPath: root) }
            let idle = SessionWorkspace(root: root, sessionID: UUID())
            let later = SessionWorkspace(root: root, sessionID: UUID())
            let busy = SessionWorkspace(root: root, sessionID: UUID())
            for workspace in [idle, later, busy] { try await workspace.lock(holder: "test").release() }
            let old = Date().addingTimeInterval(-7200)
            for workspace in [idle, busy] {
                try FileManager.default.setAttributes([.modificationDate: old], ofItemAtPath: workspace.lockFile)
            }
            _ = try await store.enqueue([NewJob(prompt: "next turn", sessionID: busy.sessionID)])
            let sweeper = SessionWorkspaceSweeper(
                root: root, retention: .seconds(3600), store: store, holder: "host test, pid \(getpid()), sweeping", logger: Logger(label: "test"))
            let retention = SessionWorkspaceRetention(sweeper: sweeper, interval: .milliseconds(100), logger: Logger(label: "test"))

            try await withThrowingTaskGroup(of: Void.self) { service in
                service.addTask { try await retention.run() }
                #expect(try await waitUntil { !FileManager.default.fileExists(atPath: idle.directory) })
                // Idle only now: the first rounds kept it, a later round removes it.
                #expect(FileManager.default.fileExists(atPath: later.directory))
                try FileManager.default.setAttributes([.modificationDate: old], ofItemAtPath: later.lockFile)
                #expect(try await waitUntil { !FileManager.default.fileExists(atPath: later.directory) })
                #expect(FileManager.default.fileExists(atPath: busy.directory), "its session has a turn pending")
                service.cancelAll()
            }
        }
    }
}
