import Foundation
import Testing
import WorkerExecution
@testable import WorkerService

/// `JOB_WORKSPACE`, `JOB_GIT_CHANGES` and `WORKSPACE_RETENTION_HOURS`.
@Suite("Workspace configuration")
struct WorkspaceConfigurationTests {
    static func load(_ environment: [String: String]) async throws -> WorkerConfiguration {
        try await WorkerConfigurationTests.load(environment)
    }

    @Test("defaults: a fresh directory per job, no change summary, workspaces kept 168 hours")
    func defaults() async throws {
        let configuration = try await Self.load(["JOB_COMMAND": "/bin/cat"])
        #expect(configuration.command?.workspace == .job)
        #expect(configuration.command?.gitChanges == false)
        #expect(configuration.workspaceRetention == .seconds(168 * 3600))
    }

    @Test("JOB_WORKSPACE=session turns the change summary on unless JOB_GIT_CHANGES=false; 0 hours keeps workspaces forever")
    func session() async throws {
        let session = try await Self.load(["JOB_COMMAND": "/bin/cat", "JOB_WORKSPACE": "Session", "WORKSPACE_RETENTION_HOURS": "24"])
        #expect(session.command?.workspace == .session && session.command?.gitChanges == true)
        #expect(session.workspaceRetention == .seconds(24 * 3600))
        let summary = Dictionary(session.commandSummary.map { ($0.name, $0.value) }, uniquingKeysWith: { $1 })
        #expect(summary["JOB_WORKSPACE"] == "session" && summary["WORKSPACE_RETENTION_HOURS"] == "24")
        #expect(summary["JOB_GIT_CHANGES"]?.hasPrefix("true (git: ") == true)

        let quiet = try await Self.load(["JOB_COMMAND": "/bin/cat", "JOB_WORKSPACE": "session", "JOB_GIT_CHANGES": "false", "WORKSPACE_RETENTION_HOURS": "0"])
        #expect(quiet.command?.gitChanges == false && quiet.workspaceRetention == nil)
    }

    @Test(
        "bad values name the variable and what is expected",
        arguments: [
            ("JOB_WORKSPACE", "shared"), ("JOB_WORKSPACE", "1"),
            ("JOB_GIT_CHANGES", "maybe"),
            ("WORKSPACE_RETENTION_HOURS", "-1"), ("WORKSPACE_RETENTION_HOURS", "a week"), ("WORKSPACE_RETENTION_HOURS", "876001"),
        ]
    )
    func rejects(variable: String, value: String) async throws {
        var environment = ["JOB_COMMAND": "/bin/cat", "JOB_WORKSPACE": "session"]
        environment[variable] = value
        let error = try await #require(throws: ConfigurationError.self) { _ = try await Self.load(environment) }
        #expect(error.variable == variable && error.description.contains("expected"))
    }

    @Test("JOB_GIT_CHANGES=true needs JOB_WORKSPACE=session")
    func gitChangesNeedSessions() async throws {
        let error = try await #require(throws: ConfigurationError.self) {
            _ = try await Self.load(["JOB_COMMAND": "/bin/cat", "JOB_GIT_CHANGES": "true"])
        }
        #expect(error.variable == "JOB_GIT_CHANGES" && error.expected.contains("JOB_WORKSPACE=session"))
    }

    @Test("a missing git stops start-up only when the change summary is on")
    func gitMissing() async throws {
        let empty = FileManager.default.temporaryDirectory.appendingPathComponent("no-git-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: empty) }
        let on = try await Self.load(["JOB_COMMAND": "/bin/cat", "JOB_WORKSPACE": "session"])
        let error = try #require(throws: ConfigurationError.self) { try on.validateForRun(path: empty) }
        #expect(error.variable == "JOB_GIT_CHANGES" && error.description.contains("apt-get install git"))
        try on.validateForRun(path: "/usr/bin:/bin")
        try await Self.load(["JOB_COMMAND": "/bin/cat", "JOB_WORKSPACE": "session", "JOB_GIT_CHANGES": "false"]).validateForRun(path: empty)
        try await Self.load(["JOB_COMMAND": "/bin/cat"]).validateForRun(path: empty)
    }
}
