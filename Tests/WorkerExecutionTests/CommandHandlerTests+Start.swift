import Foundation
import Testing
import WorkerCore
@testable import WorkerExecution

/// What starts a command failing before the command (worker-launch, bwrap) is the worker's fault,
/// told apart by worker-launch's start line (``CommandStart``).
extension CommandHandlerTests {
    /// A handler that starts `script` through `launcher` (a stand-in of worker-launch's, in
    /// Fixtures/), as it does with JOB_USER.
    static func launched(_ script: String, launcher: String) throws -> CommandHandler {
        var configuration = try CommandHandlerConfiguration(
            command: "'\(fixture(script))'",
            workdirRoot: FileManager.default.temporaryDirectory.appendingPathComponent("cmd-tests-\(UUID().uuidString.prefix(8))").path)
        configuration.user = JobUser(name: "root", uid: 0, gid: 0, groups: [], home: "/root")
        configuration.launcher = JobLauncher(path: fixture(launcher))
        return CommandHandler(configuration: configuration)
    }

    @Test("a launcher that fails before the command starts is the worker's fault, with its message; a command that fails after the start line is the job's")
    func launcherFailureIsTheWorkersFault() async throws {
        let handler = try Self.launched("exit-3.sh", launcher: "launcher-fails.sh")
        do {
            _ = try await handler.handle(Self.claimed(), context: Self.context)
            Issue.record("a launcher that never started the command completed the job")
        } catch let failure as CommandFailure {
            #expect(failure.isWorkerFault, "\(failure)")
            #expect("\(failure)".contains("failed before the command started") && "\(failure)".contains("cannot become the user"), "\(failure)")
        }

        let announced = try Self.launched("exit-3.sh", launcher: "launcher-announces.sh")
        do {
            _ = try await announced.handle(Self.claimed(), context: Self.context)
            Issue.record("exit 3 completed the job")
        } catch let failure as CommandFailure {
            guard case .exited(3, let tail) = failure else {
                Issue.record("expected exit status 3: \(failure)")
                return
            }
            #expect(!failure.isWorkerFault)
            #expect(!tail.contains("mobvibe-worker-launch"), "the start line is no part of the command's standard error: \(tail)")
        }
    }

    @Test("a relative JOB_COMMAND (`./agent.sh`) is the program found from the worker's directory, though the command starts in the job's")
    func relativeProgram() async throws {
        // The fixture's path from this process's directory, as `dir/agent.sh` is from a worker's.
        let here = FileManager.default.currentDirectoryPath.split(separator: "/").count
        let relative = String(repeating: "../", count: here) + String(Self.fixture("json-result.sh").dropFirst())
        #expect(!relative.hasPrefix("/") && FileManager.default.isExecutableFile(atPath: relative))
        let configuration = try CommandHandlerConfiguration(
            command: "'\(relative)'",
            workdirRoot: FileManager.default.temporaryDirectory.appendingPathComponent("cmd-tests-\(UUID().uuidString.prefix(8))").path)
        // Before: the child looked it up from the job's directory, and every job failed with
        // "Executable ... is not found", the worker's fault, so no job ever ran.
        let result = try await CommandHandler(configuration: configuration).handle(Self.claimed(attempt: 2), context: Self.context)
        #expect(result.contains(#""attempt":2"#), "\(result)")
    }
}
