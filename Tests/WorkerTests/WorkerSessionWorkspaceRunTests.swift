import Foundation
import Testing

/// `worker run` with `JOB_WORKSPACE=session`, as a process: what happens to a session's
/// workspace when its worker dies.
@Suite("worker run: session workspaces", .serialized)
struct WorkerSessionWorkspaceRunTests {
    @Test("a turn whose workspace another process holds waits for it without using its attempts (one allowed), then runs")
    func workspaceHeldElsewhere() async throws {
        let folder = try TemporaryDirectory()
        let script = folder.url.appendingPathComponent("turn.sh")
        try "#!/bin/bash\ncat > /dev/null\necho ran >> turns.log\necho '{}'\n".write(to: script, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: script.path)
        let root = folder.url.appendingPathComponent("work")
        let session = UUID().uuidString.lowercased()
        let sessions = root.appendingPathComponent("sessions")
        try FileManager.default.createDirectory(at: sessions, withIntermediateDirectories: true)
        // Another worker's earlier attempt of the turn, still running after its lease lapsed: it
        // holds the workspace's lock until the test has seen the turn wait (then it is killed).
        let holder = try WorkerProcess(
            ["-x", "-o", sessions.appendingPathComponent("\(session).lock").path, "sleep", "120"], environment: [:], directory: folder.url,
            executable: URL(fileURLWithPath: "/usr/bin/flock"))
        defer { holder.kill9() }
        let lockFile = sessions.appendingPathComponent("\(session).lock").path
        #expect(try await eventually("the other attempt's lock") {
            try await WorkerProcess.command(
                ["-n", "-E", "99", lockFile, "true"], environment: [:], directory: folder.url, executable: URL(fileURLWithPath: "/usr/bin/flock")
            ).status == 99
        })
        let port = try freePort()
        let environment = [
            "JOB_COMMAND": script.path, "JOB_WORKSPACE": "session", "JOB_GIT_CHANGES": "false", "JOB_WORKDIR_ROOT": root.path,
            "LEASE_DURATION_MS": "1000", "RETRY_BACKOFF_BASE_MS": "50", "RETRY_BACKOFF_MAX_MS": "100", "HEALTH_CHECK_PORT": "\(port)",
            "LOG_FORMAT": "json",
        ]
        let worker = try WorkerProcess(environment: environment, directory: folder.url)
        defer { worker.kill9() }
        let enqueued = try await WorkerProcess.command(
            ["enqueue", "--prompt", "turn", "--session-id", session, "--max-attempts", "1"], environment: environment, directory: folder.url)
        try #require(enqueued.status == 0, "\(enqueued.stderr)")
        let id = enqueued.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        func job() async throws -> [String: Any]? {
            jsonObject(try await WorkerProcess.command(["jobs", "show", id, "--json"], environment: environment, directory: folder.url).stdout)
        }
        #expect(try await eventually("waiting for the workspace") { (try await job()?["last_error"] as? String)?.contains("in use") == true })
        #expect(try await job()?["status"] as? String != "failed", "its one attempt is not used up")
        holder.kill9()
        #expect(try await eventually("completed once the workspace is free", timeout: .seconds(20)) { try await job()?["status"] as? String == "completed" })
        #expect(try await job()?["attempts"] as? Int == 1)
        worker.send(SIGTERM)
        #expect(await worker.waitForExit(timeout: .seconds(10)) == 0)
    }

    @Test("a worker killed with kill -9 mid-turn: the turn's next attempt first stops the command it left running in the workspace")
    func orphanedCommandStopped() async throws {
        let folder = try TemporaryDirectory()
        let script = folder.url.appendingPathComponent("turn.sh")
        try """
        #!/bin/bash
        read -r prompt
        echo "start $JOB_ATTEMPT $$" >> turns.log
        if [ "$JOB_ATTEMPT" = 1 ]; then sleep 60; fi
        echo "end $JOB_ATTEMPT $$" >> turns.log
        echo '{}'
        """.write(to: script, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: script.path)
        let root = folder.url.appendingPathComponent("work")
        let environment = [
            "JOB_COMMAND": script.path, "JOB_WORKSPACE": "session", "JOB_GIT_CHANGES": "false", "JOB_WORKDIR_ROOT": root.path,
            "LEASE_DURATION_MS": "1500", "RETRY_BACKOFF_BASE_MS": "50", "RETRY_BACKOFF_MAX_MS": "100",
        ]
        let first = try WorkerProcess(environment: environment.merging(["HEALTH_CHECK_PORT": "\(try freePort())"]) { $1 }, directory: folder.url)
        defer { first.kill9() }
        let session = UUID().uuidString.lowercased()
        // Enqueued while the worker starts: both open the new SQLite file at once (this failed a
        // CI run: the enqueue gave up on the file's lock, and no turn ever started).
        let enqueued = try await WorkerProcess.command(
            ["enqueue", "--prompt", "turn", "--session-id", session, "--max-attempts", "3"], environment: environment, directory: folder.url
        )
        try #require(enqueued.status == 0, "enqueue failed: \(enqueued.stderr)")
        let id = enqueued.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let log = root.appendingPathComponent("sessions/\(session)/turns.log").path
        let turns = { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

        let started = try await eventually("attempt 1 started") { turns().contains("start 1 ") }
        #expect(started, "the worker printed: \(first.stdout) \(first.stderr)")
        let line = try #require(turns().split(separator: "\n").first { $0.hasPrefix("start 1 ") })
        let orphan = try #require(pid_t(line.split(separator: " ")[2]))
        // However the test ends, nothing of it is left running (the command leads its group).
        defer { kill(-orphan, SIGKILL) }
        first.send(SIGKILL)
        WorkerProcess.reap(first.pid)
        #expect(Self.isRunning(orphan), "the command outlived its worker")

        let second = try WorkerProcess(environment: environment.merging(["HEALTH_CHECK_PORT": "\(try freePort())"]) { $1 }, directory: folder.url)
        defer { second.kill9() }
        let show = { jsonObject(try await WorkerProcess.command(["jobs", "show", id, "--json"], environment: environment, directory: folder.url).stdout) }
        #expect(try await eventually("completed by the second worker", timeout: .seconds(30)) { try await show()?["status"] as? String == "completed" })
        #expect(try await show()?["attempts"] as? Int == 2)
        #expect(turns().contains("start 2 ") && turns().contains("end 2 "))
        // Stopped before attempt 2 ran: it never finished, and it is gone.
        #expect(!turns().contains("end 1 "))
        #expect(!Self.isRunning(orphan), "attempt 1's command still runs beside attempt 2")
        #expect(second.stdout.contains("Stopping what a dead worker's command left running in the session workspace"))
        second.send(SIGTERM)
        #expect(await second.waitForExit(timeout: .seconds(10)) == 0)
    }

    /// Alive and not a zombie (an orphan that was killed waits for init to reap it).
    static func isRunning(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.range(of: ")", options: .backwards)
        else { return false }
        return stat[close.upperBound...].split(separator: " ").first != "Z"
    }

    @Test("a session's workspace is its first turn's user's: another user's turn fails for good, whatever the store's rows say; a backend's turn runs in any; a user's never in a backend's")
    func workspaceKeepsItsOwner() async throws {
        let folder = try TemporaryDirectory()
        let port = try freePort()
        let environment = [
            "JOB_COMMAND": "/bin/cat", "JOB_WORKSPACE": "session", "JOB_GIT_CHANGES": "false",
            "JOB_WORKDIR_ROOT": folder.url.appendingPathComponent("work").path, "HEALTH_CHECK_PORT": "\(port)", "LOG_FORMAT": "json",
        ]
        let worker = try WorkerProcess(environment: environment, directory: folder.url)
        defer { worker.kill9() }
        #expect(try await eventually("health") { try await http(port: port, path: "/health").status == 200 })
        func turn(_ session: String, user: UUID?) async throws -> [String: Any] {
            let arguments = ["enqueue", "--prompt", "turn", "--session-id", session] + (user.map { ["--user-id", $0.uuidString.lowercased()] } ?? [])
            let id = try await WorkerProcess.command(arguments, environment: environment, directory: folder.url).stdout
                .trimmingCharacters(in: .whitespacesAndNewlines)
            var job: [String: Any] = [:]
            _ = try await eventually("turn \(id) finished") {
                job = jsonObject(try await WorkerProcess.command(["jobs", "show", id, "--json"], environment: environment, directory: folder.url).stdout) ?? [:]
                return ["completed", "failed"].contains(job["status"] as? String ?? "")
            }
            return job
        }
        let (alice, bob) = (UUID(), UUID())
        let session = UUID().uuidString.lowercased()
        #expect(try await turn(session, user: alice)["status"] as? String == "completed")
        // (The store lets it in: a plain database has no owner rule, and on Supabase the enqueue
        // function's rule rests on rows that retention deletes before the workspace goes.)
        let taken = try await turn(session, user: bob)
        let error = taken["lastError"] as? String ?? taken["last_error"] as? String ?? ""
        #expect(taken["status"] as? String == "failed" && error.contains("belongs to another user"), "\(taken)")
        #expect((taken["attempts"] as? Int) == 1, "failed for good, not retried: \(taken)")
        #expect(try await turn(session, user: alice)["status"] as? String == "completed", "the owner's next turn")
        #expect(try await turn(session, user: nil)["status"] as? String == "completed", "a backend's turn")
        let backendSession = UUID().uuidString.lowercased()
        #expect(try await turn(backendSession, user: nil)["status"] as? String == "completed")
        let intoBackend = try await turn(backendSession, user: alice)
        #expect(intoBackend["status"] as? String == "failed" && (intoBackend["lastError"] as? String ?? intoBackend["last_error"] as? String ?? "").contains("a backend's turns"), "\(intoBackend)")
        worker.send(SIGTERM)
        #expect(await worker.waitForExit(timeout: .seconds(10)) == 0)
    }
}
