import Foundation
import Logging
import WorkerCore
@testable import WorkerExecution

/// A scratch `JOB_WORKDIR_ROOT` for one test, and handlers and jobs that use it.
struct WorkspaceFixture {
    let root: String

    /// Runs `body` with a fresh root, removed afterwards whether it passed or not.
    static func with(_ body: (WorkspaceFixture) async throws -> Void) async throws {
        // As the worker does at start-up: a command that never reads its prompt must not take
        // the test process down with it (writing to its closed standard input).
        signal(SIGPIPE, SIG_IGN)
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("ws-tests-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        try await body(WorkspaceFixture(root: root))
    }

    /// A handler running `command` through `/bin/sh -c` in session workspaces.
    func handler(
        _ command: String,
        workspace: WorkspaceMode = .session,
        gitChanges: Bool? = nil,
        keep: CommandHandlerConfiguration.KeepWorkdir = .never
    ) throws -> CommandHandler {
        let configuration = try CommandHandlerConfiguration(
            command: command, useShell: true, workdirRoot: root, workspace: workspace, gitChanges: gitChanges,
            gitTimeout: .seconds(30), keepWorkdir: keep, timeout: .seconds(60), killGrace: .milliseconds(200))
        return CommandHandler(configuration: configuration, environment: ["PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": NSTemporaryDirectory()])
    }

    static func claimed(session: UUID?, prompt: String = "p", attempt: Int = 1) -> ClaimedJob {
        let job = Job(id: UUID(), sessionID: session, prompt: prompt, payload: #"{"k":1}"#, status: .processing, runAt: Date(), attempts: attempt, maxAttempts: 3, createdAt: Date())
        return ClaimedJob(job: job, lease: Lease(jobID: job.id, workerID: "w", attempt: attempt, expiresAt: Date()))
    }

    static func context(_ workerID: String = "w") -> JobContext {
        JobContext(logger: Logger(label: "test"), workerID: workerID)
    }

    static func object(_ result: String) throws -> [String: Any] {
        guard let object = try JSONSerialization.jsonObject(with: Data(result.utf8)) as? [String: Any] else {
            throw FixtureError(description: "not a JSON object: \(result)")
        }
        return object
    }

    func workspace(_ session: UUID) -> SessionWorkspace { SessionWorkspace(root: root, sessionID: session) }

    struct FixtureError: Error, CustomStringConvertible {
        var description: String
    }
}
