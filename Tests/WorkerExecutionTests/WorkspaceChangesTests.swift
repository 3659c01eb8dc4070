import Foundation
import Testing
import WorkerCore
@testable import WorkerExecution
import WorkerTestSupport

/// The change summary with real git on a real repository.
@Suite("WorkspaceChanges")
struct WorkspaceChangesTests {
    /// Runs git in `directory` (off the cooperative pool: it waits for the process); returns
    /// standard output, throws on a non-zero exit.
    @discardableResult
    static func git(_ arguments: [String], in directory: String) async throws -> String {
        try await offThePool { try gitBlocking(arguments, in: directory) }
    }

    private static func gitBlocking(_ arguments: [String], in directory: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", "-C", directory] + arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw WorkspaceFixture.FixtureError(description: "git \(arguments.joined(separator: " ")) exited \(process.terminationStatus)")
        }
        return String(decoding: data, as: UTF8.self)
    }

    static func write(_ text: String, to path: String) throws {
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// The fixture: a repository in the session's workspace with three committed files and an
    /// untracked one, made before the job.
    static func makeRepository(_ workspace: SessionWorkspace) async throws {
        try FileManager.default.createDirectory(atPath: workspace.directory, withIntermediateDirectories: true)
        try await git(["init", "-q"], in: workspace.directory)
        try write("one\ntwo\nthree\n", to: workspace.directory + "/edit.txt")
        try write("bye\nnow\n", to: workspace.directory + "/gone.txt")
        try write("unchanged\n", to: workspace.directory + "/same.txt")
        try await git(["add", "edit.txt", "gone.txt", "same.txt"], in: workspace.directory)
        try await git(["commit", "-q", "-m", "fixture"], in: workspace.directory)
        try write("untracked before the job\n", to: workspace.directory + "/scratch.txt")
    }

    @Test("a job that modifies, adds and deletes: exact lists and counts in its result; HEAD and the user's index untouched")
    func matchesFixture() async throws {
        try await WorkspaceFixture.with { fixture in
            let session = UUID()
            let workspace = fixture.workspace(session)
            try await Self.makeRepository(workspace)
            let head = try await Self.git(["rev-parse", "HEAD"], in: workspace.directory)
            let handler = try fixture.handler(#"printf 'one\nTWO\nthree\nfour\n' > edit.txt; rm gone.txt; printf 'brand\nnew\n' > added.txt; echo '{"ok": true}'"#)

            let result = try await handler.handle(WorkspaceFixture.claimed(session: session), context: WorkspaceFixture.context())
            #expect(result == #"{"ok": true,"changes":{"added":["added.txt"],"deleted":["gone.txt"],"deletions":3,"filesChanged":3,"insertions":4,"modified":["edit.txt"],"renamed":[]}}"#)

            #expect(try await Self.git(["rev-parse", "HEAD"], in: workspace.directory) == head)
            #expect(try await Self.git(["diff", "--cached", "--name-only"], in: workspace.directory).isEmpty, "nothing staged in the user's index")
            let status = try await Self.git(["status", "--porcelain"], in: workspace.directory)
            #expect(status == " M edit.txt\n D gone.txt\n?? added.txt\n?? scratch.txt\n")

            // The next turn is compared with the state the previous one left, not with HEAD.
            let next = try fixture.handler(#"echo more >> added.txt; echo '{}'"#)
            let nextResult = try await next.handle(WorkspaceFixture.claimed(session: session), context: WorkspaceFixture.context())
            #expect(nextResult == #"{"changes":{"added":[],"deleted":[],"deletions":0,"filesChanged":1,"insertions":1,"modified":["added.txt"],"renamed":[]}}"#)
        }
    }

    @Test("a renamed file is listed as a rename, a non-object result is wrapped")
    func renameAndWrapping() async throws {
        try await WorkspaceFixture.with { fixture in
            let session = UUID()
            let workspace = fixture.workspace(session)
            try await Self.makeRepository(workspace)
            let handler = try fixture.handler(#"mv same.txt moved.txt; echo '[1, 2]'"#)
            let result = try await handler.handle(WorkspaceFixture.claimed(session: session), context: WorkspaceFixture.context())
            #expect(result == #"{"result":[1, 2],"changes":{"added":[],"deleted":[],"deletions":0,"filesChanged":1,"insertions":0,"modified":[],"renamed":[{"from":"same.txt","to":"moved.txt"}]}}"#)
        }
    }

    @Test("a folder holding a repository without commits (an agent's `git init` in a subfolder) is left out; the rest is summed up")
    func nestedRepositoryWithoutCommits() async throws {
        try await WorkspaceFixture.with { fixture in
            let session = UUID()
            let workspace = fixture.workspace(session)
            try await Self.makeRepository(workspace)
            // Before: `git add --all` refused the whole work tree ("'tool/' does not have a commit
            // checked out") and the summary was left out.
            let handler = try fixture.handler(#"mkdir tool && git -C tool init -q && echo x > tool/x.txt && echo new >> edit.txt && echo '{}'"#)
            let result = try await handler.handle(WorkspaceFixture.claimed(session: session), context: WorkspaceFixture.context())
            #expect(result == #"{"changes":{"added":[],"deleted":[],"deletions":0,"filesChanged":1,"insertions":1,"modified":["edit.txt"],"renamed":[]}}"#)
        }
    }

    @Test("no summary outside a git work tree, with JOB_GIT_CHANGES=false, or when git fails; the job still completes")
    func noSummary() async throws {
        try await WorkspaceFixture.with { fixture in
            let plain = try fixture.handler(#"echo hi > a.txt; echo '{"n":1}'"#)
            #expect(try await plain.handle(WorkspaceFixture.claimed(session: UUID()), context: WorkspaceFixture.context()) == #"{"n":1}"#)

            let session = UUID()
            let workspace = fixture.workspace(session)
            try await Self.makeRepository(workspace)
            let off = try fixture.handler(#"echo hi > a.txt; echo '{"n":2}'"#, gitChanges: false)
            #expect(try await off.handle(WorkspaceFixture.claimed(session: session), context: WorkspaceFixture.context()) == #"{"n":2}"#)

            // A corrupt index makes `git add` fail: a warning, no summary, the job's result as it was.
            try Self.write("not an index", to: workspace.directory + "/.git/index")
            let broken = try fixture.handler(#"echo hi > b.txt; echo '{"n":3}'"#)
            #expect(try await broken.handle(WorkspaceFixture.claimed(session: session), context: WorkspaceFixture.context()) == #"{"n":3}"#)
        }
    }

    @Test("attaching to results: objects keep their text, others are wrapped")
    func attaching() {
        let changes = WorkspaceChanges(added: ["a"], filesChanged: 1, insertions: 2)
        let summary = #"{"added":["a"],"deleted":[],"deletions":0,"filesChanged":1,"insertions":2,"modified":[],"renamed":[]}"#
        #expect(changes.attached(to: #"{"x": 1.50}"#) == #"{"x": 1.50,"changes":"# + summary + "}")
        #expect(changes.attached(to: "{}") == #"{"changes":"# + summary + "}")
        #expect(changes.attached(to: #"{"changes": "mine"}"#) == #"{"result":{"changes": "mine"},"changes":"# + summary + "}")
        #expect(changes.attached(to: #""text""#) == #"{"result":"text","changes":"# + summary + "}")
    }
}
