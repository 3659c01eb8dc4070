import Foundation
import Subprocess
import Testing
import WorkerCore
@testable import WorkerExecution

/// `JOB_WORKSPACE=session` through the real command handler: real directories, real child
/// processes, real `flock`s.
@Suite("SessionWorkspace")
struct SessionWorkspaceTests {
    /// Appends the prompt to notes.txt and reports what the directory holds.
    static let appendCommand = #"""
        cat >> notes.txt; echo >> notes.txt
        printf '{"pwd":"%s","lines":%s,"entries":"%s","payload":"%s"}' "$(pwd)" "$(grep -c . notes.txt)" "$(ls -A | tr '\n' ' ')" "$JOB_PAYLOAD_FILE"
        """#

    @Test("turn 2 sees turn 1's files; the workspace outlives the jobs; payload.json stays outside it")
    func turnsShareTheWorkspace() async throws {
        try await WorkspaceFixture.with { fixture in
            let handler = try fixture.handler(Self.appendCommand, keep: .never)
            let session = UUID()
            let workspace = fixture.workspace(session)

            let first = try WorkspaceFixture.object(try await handler.handle(WorkspaceFixture.claimed(session: session, prompt: "turn one"), context: WorkspaceFixture.context()))
            #expect(first["pwd"] as? String == workspace.directory)
            #expect(first["lines"] as? Int == 1)
            let payload = try #require(first["payload"] as? String)
            #expect(!payload.hasPrefix(workspace.directory + "/"), "payload.json must not land in the workspace")
            #expect(!FileManager.default.fileExists(atPath: payload), "the per-attempt directory is removed (JOB_KEEP_WORKDIR=never)")

            let second = try WorkspaceFixture.object(try await handler.handle(WorkspaceFixture.claimed(session: session, prompt: "turn two"), context: WorkspaceFixture.context()))
            #expect(second["pwd"] as? String == workspace.directory)
            #expect(second["lines"] as? Int == 2)
            #expect(second["entries"] as? String == "notes.txt ", "only the job's own file: no payload, no lock file")
            #expect(try String(contentsOfFile: workspace.directory + "/notes.txt", encoding: .utf8) == "turn one\nturn two\n")

            // Another session has a workspace of its own; a job without a session a fresh directory.
            let other = try WorkspaceFixture.object(try await handler.handle(WorkspaceFixture.claimed(session: UUID(), prompt: "elsewhere"), context: WorkspaceFixture.context()))
            #expect(other["lines"] as? Int == 1 && other["pwd"] as? String != workspace.directory)
            let loose = try WorkspaceFixture.object(try await handler.handle(WorkspaceFixture.claimed(session: nil), context: WorkspaceFixture.context()))
            let loosePwd = try #require(loose["pwd"] as? String)
            #expect(loose["lines"] as? Int == 1 && !loosePwd.contains("/sessions/"))
            #expect(!FileManager.default.fileExists(atPath: loosePwd), "a job without a session still gets a fresh directory, removed afterwards")
            #expect(FileManager.default.fileExists(atPath: workspace.directory + "/notes.txt"))
        }
    }

    @Test("with JOB_WORKSPACE=job, two jobs of one session do not share a directory")
    func jobModeIsUnchanged() async throws {
        try await WorkspaceFixture.with { fixture in
            let handler = try fixture.handler(Self.appendCommand, workspace: .job)
            let session = UUID()
            for _ in 0..<2 {
                let result = try WorkspaceFixture.object(try await handler.handle(WorkspaceFixture.claimed(session: session), context: WorkspaceFixture.context()))
                #expect(result["lines"] as? Int == 1)
            }
            #expect(!FileManager.default.fileExists(atPath: fixture.workspace(session).directory))
        }
    }

    @Test("a second worker cannot enter a workspace while a turn runs in it: the turn is deferred naming the holder, then succeeds once it is free")
    func secondHandlerIsRefused() async throws {
        try await WorkspaceFixture.with { fixture in
            let signals = fixture.root + "-signals"
            try FileManager.default.createDirectory(atPath: signals, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: signals) }
            let slow = try fixture.handler("touch '\(signals)/started'; while [ ! -e '\(signals)/release' ]; do sleep 0.05; done; echo '{\"slow\":true}'")
            let other = try fixture.handler(Self.appendCommand)
            let session = UUID()

            // Leaving the scope early (a failed #require) cancels the slow job, which stops its process.
            async let slowResult = slow.handle(WorkspaceFixture.claimed(session: session), context: WorkspaceFixture.context("worker-a"))
            for _ in 0..<500 where !FileManager.default.fileExists(atPath: signals + "/started") { try await Task.sleep(for: .milliseconds(20)) }
            #expect(FileManager.default.fileExists(atPath: signals + "/started"))

            let error = try await #require(throws: SessionWorkspaceError.self) {
                _ = try await other.handle(WorkspaceFixture.claimed(session: session), context: WorkspaceFixture.context("worker-b"))
            }
            guard case .inUse(let refused, let holder, _) = error else { Issue.record("unexpected \(error)"); return }
            #expect(refused == session)
            #expect(holder.contains("pid \(getpid())") && holder.contains("worker worker-a") && holder.contains("host "))
            #expect(error.description.contains("in use by host") && error.description.contains("without using an attempt"))
            #expect(error.isDeferred, "the turn waits for the workspace; its attempts are not used up")
            // The likely cause first (an earlier attempt still running after a lapsed lease), where to look.
            #expect(error.description.contains("earlier attempt") && error.description.contains("Lease renewal failed"), "\(error)")
            #expect(!FileManager.default.fileExists(atPath: fixture.workspace(session).directory + "/notes.txt"), "the refused job never ran")

            _ = FileManager.default.createFile(atPath: signals + "/release", contents: nil)
            #expect(try WorkspaceFixture.object(try await slowResult)["slow"] as? Bool == true)
            let retried = try WorkspaceFixture.object(try await other.handle(WorkspaceFixture.claimed(session: session, attempt: 2), context: WorkspaceFixture.context("worker-b")))
            #expect(retried["lines"] as? Int == 1)
        }
    }

    @Test("a lock held by another process (another host's worker) refuses the turn naming its host and pid; once that process is killed the kernel frees it")
    func lockHeldByAnotherProcess() async throws {
        try await WorkspaceFixture.with { fixture in
            let session = UUID()
            let workspace = fixture.workspace(session)
            try FileManager.default.createDirectory(atPath: (workspace.lockFile as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            // A shell that locks the file, writes a holder line as a worker would, then becomes `sleep` (same pid, fd kept).
            let holder = Process()
            holder.executableURL = URL(fileURLWithPath: "/bin/sh")
            holder.arguments = ["-c", #"exec 9<>"$0"; flock -n 9 || exit 3; printf 'host elsewhere.example, pid %s, worker w-other\n' $$ >&9; touch "$0.ready"; exec sleep 120"#, workspace.lockFile]
            try holder.run()
            defer {
                kill(holder.processIdentifier, SIGKILL)
                holder.waitUntilExit()
            }
            for _ in 0..<500 where !FileManager.default.fileExists(atPath: workspace.lockFile + ".ready") { try await Task.sleep(for: .milliseconds(20)) }
            try? FileManager.default.removeItem(atPath: workspace.lockFile + ".ready")

            let handler = try fixture.handler(Self.appendCommand)
            let error = try await #require(throws: SessionWorkspaceError.self) {
                _ = try await handler.handle(WorkspaceFixture.claimed(session: session), context: WorkspaceFixture.context())
            }
            #expect(error.description.contains("host elsewhere.example, pid \(holder.processIdentifier), worker w-other"))

            kill(holder.processIdentifier, SIGKILL)
            holder.waitUntilExit()
            let result = try WorkspaceFixture.object(try await handler.handle(WorkspaceFixture.claimed(session: session), context: WorkspaceFixture.context()))
            #expect(result["lines"] as? Int == 1)
        }
    }

    @Test("the lock's descriptor does not leak into the job's processes, and the lock file records the turn's end")
    func lockDoesNotLeak() async throws {
        try await WorkspaceFixture.with { fixture in
            let handler = try fixture.handler(#"for f in /proc/$$/fd/*; do readlink "$f"; done; exit 0"#)
            let session = UUID()
            let workspace = fixture.workspace(session)
            let start = Date().addingTimeInterval(-1)
            let result = try WorkspaceFixture.object(try await handler.handle(WorkspaceFixture.claimed(session: session), context: WorkspaceFixture.context()))
            let descriptors = try #require(result["stdout"] as? String)
            #expect(descriptors.contains("pipe:"), "the listing worked")
            #expect(!descriptors.contains(".lock"), "open descriptors: \(descriptors)")
            let touched = try #require(try FileManager.default.attributesOfItem(atPath: workspace.lockFile)[.modificationDate] as? Date)
            #expect(touched >= start)
            // Free again: a lock taken now succeeds at once.
            let lock = try await FileLock.acquire(path: workspace.lockFile, holder: "test", patience: .seconds(1))
            #expect(lock.closesOnExec)
            lock.release()
            #expect(!lock.closesOnExec, "released")
        }
    }

    @Test("a dead worker's command is found in its workspace when JOB_WORKDIR_ROOT is reached through a symbolic link")
    func orphanThroughSymlink() async throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("orphan-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: "\(base)/real/workspace", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: "\(base)/link", withDestinationPath: "\(base)/real")
        defer { try? FileManager.default.removeItem(atPath: base) }
        // A process in a session and group of its own (setsid, started from a shell's
        // background so that it need not fork), working in the workspace; the shell prints its pid.
        // (Foundation's Process waited for the sleep too: Subprocess does not.)
        _ = try await Subprocess.run(
            .path("/bin/sh"), arguments: ["-c", "cd \(base)/real/workspace || exit 1; setsid sleep 30 > /dev/null 2>&1 < /dev/null & echo $! > \(base)/pid"],
            output: .discarded, error: .discarded)
        let pid = try #require(pid_t(try String(contentsOfFile: "\(base)/pid", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        defer { kill(pid, SIGKILL) }
        var group: pid_t?
        for _ in 0..<100 {
            group = OrphanedCommand.processGroup(of: pid)
            if group == pid { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        try #require(group == pid, "setsid made a group of its own")
        #expect(OrphanedCommand.members(of: pid, workingIn: "\(base)/real/workspace") == [pid])
        // Before: /proc's real path never matched the path through the link.
        #expect(OrphanedCommand.members(of: pid, workingIn: "\(base)/link/workspace") == [pid])
    }

    @Test("the lock's note names the running command's process group; a note without one names no orphan")
    func orphanNote() {
        let note = OrphanedCommand.note(holder: "host pod-7, pid 41, worker w-1, retries 2", processGroup: 977)
        let parsed = OrphanedCommand(note: note)
        #expect(parsed?.host == "pod-7" && parsed?.workerPID == 41 && parsed?.processGroup == 977)
        #expect(OrphanedCommand(note: "host pod-7, pid 41, worker w-1") == nil, "no command started yet")
        #expect(OrphanedCommand(note: "") == nil)
        #expect(OrphanedCommand(note: "host h, pid 41, worker w, command group 1") == nil, "never init")
    }
}
