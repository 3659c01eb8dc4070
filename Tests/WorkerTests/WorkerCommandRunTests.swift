import Foundation
import Testing

/// `worker run` with JOB_COMMAND: cancellation and shutdown stop the child's process group.
@Suite("worker run with a command", .serialized)
struct WorkerCommandRunTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("WorkerExecutionTests/Fixtures")

    static func isAlive(_ pid: pid_t) -> Bool {
        guard kill(pid, 0) == 0 else { return false }
        let status = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
        return !status.contains(") Z ")
    }

    static func start(folder: URL, pidsFile: String, extra: [String: String] = [:]) throws -> (WorkerProcess, [String: String], Int) {
        let port = try freePort()
        var environment = [
            "JOB_COMMAND": fixtures.appendingPathComponent("spawn-and-hang.sh").path,
            "JOB_ENV_PASSTHROUGH": "PIDS_FILE", "PIDS_FILE": pidsFile, "JOB_KILL_GRACE_MS": "500",
            "HEALTH_CHECK_PORT": "\(port)", "LOG_FORMAT": "json", "JOB_WORKDIR_ROOT": folder.appendingPathComponent("jobs").path,
        ]
        environment.merge(extra) { $1 }
        return (try WorkerProcess(environment: environment, directory: folder), environment, port)
    }

    static func pids(_ file: String) -> [pid_t] {
        ((try? String(contentsOfFile: file, encoding: .utf8)) ?? "").split(separator: " ")
            .compactMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    @Test("worker jobs cancel stops a running command within a few seconds and leaves the job cancelled")
    func cancelRunningCommand() async throws {
        let folder = try TemporaryDirectory()
        let pidsFile = folder.url.appendingPathComponent("pids").path
        let (worker, environment, port) = try Self.start(folder: folder.url, pidsFile: pidsFile)
        defer { worker.kill9() }
        #expect(try await eventually("health") { try await http(port: port, path: "/health").status == 200 })
        let id = try await WorkerProcess.command(["enqueue", "--prompt", "hang"], environment: environment, directory: folder.url)
            .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try await eventually("started") { Self.pids(pidsFile).count == 2 })
        #expect(try await WorkerProcess.command(["jobs", "cancel", id], environment: environment, directory: folder.url).status == 0)
        // From the cancel's commit: the CLI process's own start-up is not the worker's reaction.
        let clock = ContinuousClock()
        let start = clock.now
        #expect(try await eventually("stopped", timeout: .seconds(10)) { Self.pids(pidsFile).allSatisfy { !Self.isAlive($0) } })
        #expect(clock.now - start < .seconds(5))
        let job = jsonObject(try await WorkerProcess.command(["jobs", "show", id, "--json"], environment: environment, directory: folder.url).stdout)
        #expect(job?["status"] as? String == "cancelled")
        worker.send(SIGTERM)
        #expect(await worker.waitForExit(timeout: .seconds(10)) == 0)
    }

    @Test("a cancelled command gets SIGTERM and its grace: what it prints meanwhile is recorded before the job's cancelled event")
    func cancelledCommandsLastWords() async throws {
        let folder = try TemporaryDirectory()
        let marker = folder.url.appendingPathComponent("saved").path
        let (worker, environment, port) = try Self.start(folder: folder.url, pidsFile: "", extra: [
            "JOB_COMMAND": Self.fixtures.appendingPathComponent("graceful-stop.sh").path, "JOB_ENV_PASSTHROUGH": "MARKER_FILE",
            "MARKER_FILE": marker, "JOB_KILL_GRACE_MS": "20000",
        ])
        defer { worker.kill9() }
        #expect(try await eventually("health") { try await http(port: port, path: "/health").status == 200 })
        let id = try await WorkerProcess.command(["enqueue", "--prompt", "work"], environment: environment, directory: folder.url)
            .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        func events() async throws -> [[String: Any]] {
            try await WorkerProcess.command(["jobs", "logs", id, "--json"], environment: environment, directory: folder.url)
                .stdout.split(separator: "\n").compactMap { jsonObject(String($0)) }
        }
        func text(_ event: [String: Any]) -> String {
            let data = event["data"] as? [String: Any]
            return (data?["text"] as? String) ?? (data?["status"] as? String) ?? ""
        }
        #expect(try await eventually("ready printed") { try await events().contains { text($0) == "ready" } })
        #expect(try await WorkerProcess.command(["jobs", "cancel", id], environment: environment, directory: folder.url).status == 0)
        #expect(try await eventually("cancelled event", timeout: .seconds(15)) { try await events().contains { text($0) == "cancelled" } })
        #expect(FileManager.default.fileExists(atPath: marker), "the command finished saving its work")
        let texts = try await events().map(text)
        let saved = texts.firstIndex(of: "saved"), cancelled = texts.firstIndex(of: "cancelled")
        #expect(texts.contains("got-term"), "events: \(texts)")
        #expect(saved != nil && cancelled != nil && saved! < cancelled!, "events: \(texts)")
        worker.send(SIGTERM)
        #expect(await worker.waitForExit(timeout: .seconds(10)) == 0)
    }

    @Test("shutdown with a running command: its process group is stopped and the job is pending again")
    func shutdownWithRunningCommand() async throws {
        let folder = try TemporaryDirectory()
        let pidsFile = folder.url.appendingPathComponent("pids").path
        let (worker, environment, port) = try Self.start(folder: folder.url, pidsFile: pidsFile, extra: ["SHUTDOWN_TIMEOUT_MS": "500"])
        defer { worker.kill9() }
        #expect(try await eventually("health") { try await http(port: port, path: "/health").status == 200 })
        let id = try await WorkerProcess.command(["enqueue", "--prompt", "hang"], environment: environment, directory: folder.url)
            .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try await eventually("started") { Self.pids(pidsFile).count == 2 })
        worker.send(SIGTERM)
        let status = await worker.waitForExit(timeout: .seconds(10))
        #expect(status == 0, "the worker's log: \(worker.stderr.suffix(4000)) \(worker.stdout.suffix(4000))")
        for pid in Self.pids(pidsFile) { #expect(!Self.isAlive(pid), "process \(pid) survived the worker") }
        let job = jsonObject(try await WorkerProcess.command(["jobs", "show", id, "--json"], environment: environment, directory: folder.url).stdout)
        #expect(job?["status"] as? String == "pending")
        #expect(job?["attempts"] as? Int == 0)
    }

    @Test("a worker-launch from before --announce beside the worker stops start-up naming it (it would have failed every command's start)",
          .enabled(if: getuid() == 0, "needs root"))
    func oldLauncherStopsStartUp() async throws {
        let folder = try TemporaryDirectory()
        // The worker as an image that copied only its binary would hold it: beside an old launcher.
        let binary = folder.url.appendingPathComponent("worker").path
        guard link(WorkerProcess.binary.path, binary) == 0 else {
            Issue.record("cannot link the worker binary into \(folder.url.path): \(String(cString: strerror(errno)))")
            return
        }
        try FileManager.default.copyItem(
            atPath: Self.fixtures.appendingPathComponent("launcher-old.sh").path, toPath: folder.url.appendingPathComponent("worker-launch").path)
        let worker = try WorkerProcess(
            environment: ["JOB_COMMAND": "cat", "JOB_USER": "nobody", "HEALTH_CHECK_PORT": "\(try freePort())",
                          "JOB_WORKDIR_ROOT": folder.url.appendingPathComponent("jobs").path],
            directory: folder.url, executable: URL(fileURLWithPath: binary))
        defer { worker.kill9() }
        #expect(await worker.waitForExit(timeout: .seconds(30)) == 1)
        let output = worker.stdout + worker.stderr
        #expect(output.contains("worker-launch at \(folder.url.appendingPathComponent("worker-launch").path)")
            && output.contains("unknown option --announce") && output.contains("older release"), "\(output.suffix(3000))")
    }

    @Test("configuration: a missing command stops production start-up; command needs JOB_COMMAND; secrets cannot pass through")
    func commandConfiguration() async throws {
        let folder = try TemporaryDirectory()
        let port = "\(try freePort())"
        let missing = try await WorkerProcess.command(["run"], environment: ["APP_ENV": "production", "JOB_COMMAND": "/nonexistent/agent --flag", "HEALTH_CHECK_PORT": port], directory: folder.url)
        #expect(missing.status == 1 && missing.stderr.contains("JOB_COMMAND") && missing.stderr.contains("/nonexistent/agent"))
        let noCommand = try await WorkerProcess.command(["config", "check"], environment: ["JOB_HANDLER": "command"], directory: folder.url)
        #expect(noCommand.status == 1 && noCommand.stderr.contains("JOB_COMMAND"))
        let secret = try await WorkerProcess.command(["config", "check"], environment: ["JOB_COMMAND": "cat", "JOB_ENV_PASSTHROUGH": "HOME,DATABASE_URL"], directory: folder.url)
        #expect(secret.status == 1 && secret.stderr.contains("JOB_ENV_PASSTHROUGH"))
        let check = try await WorkerProcess.command(["config", "check"], environment: ["JOB_COMMAND": "cat -n 'a b'", "JOB_TIMEOUT_MS": "5000"], directory: folder.url)
        #expect(check.status == 0)
        #expect(check.stdout.contains("/usr/bin/cat") || check.stdout.contains("/bin/cat"))
        #expect(check.stdout.contains(#""-n" "a b""#))
        #expect(check.stdout.contains("JOB_TIMEOUT_MS") && check.stdout.contains("5000"))
        #expect(check.stdout.contains("JOB_HANDLER") && check.stdout.contains("command"))
    }
}

extension WorkerCommandRunTests {
    @Test("pretty logs: a command's standard error in a failure cannot forge a log line or send escape sequences to the operator's terminal; an API_TOKEN read with a final line break still matches")
    func prettyLogsAndTokenLineBreak() async throws {
        let folder = try TemporaryDirectory()
        // A failure whose standard error holds a line break, a forged line, and ESC sequences.
        let script = try folder.script(
            "forge.sh", "#!/bin/sh\nprintf 'oops\\n06:00:00.000 INFO     Job completed jobId=forged\\n\\033[2J\\033]0;owned\\007' >&2\nexit 3\n")
        let port = try freePort()
        let token = "0123456789abcdef0123"
        let environment = [
            "JOB_COMMAND": script.path, "HEALTH_CHECK_PORT": "\(port)", "LOG_FORMAT": "pretty", "JOB_MAX_ATTEMPTS": "1",
            "JOB_WORKDIR_ROOT": folder.url.appendingPathComponent("jobs").path, "API_TOKEN": token + "\n",
        ]
        let worker = try WorkerProcess(environment: environment, directory: folder.url)
        defer { worker.kill9() }
        #expect(try await eventually("health") { try await http(port: port, path: "/health").status == 200 })
        let id = try await WorkerProcess.command(["enqueue", "--prompt", "forge"], environment: environment, directory: folder.url)
            .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(try await eventually("failed") {
            jsonObject(try await WorkerProcess.command(["jobs", "show", id, "--json"], environment: environment, directory: folder.url).stdout)?["status"] as? String == "failed"
        })
        // The token as a client sends it (no line break) is the API_TOKEN.
        let answer = try await http(port: port, path: "/jobs/\(id)", headers: ["Authorization": "Bearer \(token)"])
        #expect(answer.status == 200, "\(answer.status) \(answer.body.prefix(200))")
        worker.send(SIGTERM)
        #expect(await worker.waitForExit(timeout: .seconds(10)) == 0)
        let output = worker.stdout + worker.stderr
        #expect(output.contains("Job failed") || output.contains("failed"), "\(output.suffix(2000))")
        #expect(!output.unicodeScalars.contains("\u{1B}"), "an escape sequence reached the log")
        #expect(!output.split(separator: "\n").contains { $0.hasPrefix("06:00:00.000") }, "a forged line: \(output.suffix(2000))")
        #expect(output.contains("06:00:00.000 INFO"), "the text is still there, escaped: \(output.suffix(2000))")
    }
}

extension WorkerCommandRunTests {
    @Test("the default JOB_WORKDIR_ROOT (in the shared temporary folder) that another user made, a symlink, or writable by others stops start-up naming it; a folder the operator chose with such a mode (a Kubernetes emptyDir, 2777) is warned about; a fresh one is made")
    func workdirRootChecked() async throws {
        let folder = try TemporaryDirectory()
        // The worker's temporary folder, where its default JOB_WORKDIR_ROOT lives.
        let temporary = folder.url.appendingPathComponent("tmp").path
        try FileManager.default.createDirectory(atPath: temporary, withIntermediateDirectories: false)
        #expect(chmod(temporary, 0o1777) == 0)
        let defaultRoot = "\(temporary)/mobvibe-worker-jobs"
        func start(_ root: String?) async throws -> (status: Int32?, output: String) {
            var environment = ["JOB_COMMAND": "/bin/cat", "HEALTH_CHECK_PORT": "\(try freePort())", "LOG_FORMAT": "json", "TMPDIR": temporary]
            if let root { environment["JOB_WORKDIR_ROOT"] = root }
            let worker = try WorkerProcess(environment: environment, directory: folder.url)
            defer { worker.kill9() }
            let status = await worker.waitForExit(timeout: .seconds(3))
            return (status, worker.stdout + worker.stderr)
        }
        func reset() { try? FileManager.default.removeItem(atPath: defaultRoot) }
        if getuid() == 0 {
            // Another user made the default folder first.
            try FileManager.default.createDirectory(atPath: defaultRoot, withIntermediateDirectories: false)
            #expect(chown(defaultRoot, 65534, 65534) == 0)
            let answer = try await start(nil)
            #expect(answer.status == 1 && answer.output.contains("JOB_WORKDIR_ROOT") && answer.output.contains("belongs to uid 65534"), "\(answer.output.suffix(800))")
            reset()
        }
        try FileManager.default.createDirectory(atPath: defaultRoot, withIntermediateDirectories: false)
        #expect(chmod(defaultRoot, 0o777) == 0)
        let open = try await start(nil)
        #expect(open.status == 1 && open.output.contains("may be written by every user"), "\(open.output.suffix(800))")
        // config check refuses it as run does (before: "Configuration is valid").
        let check = try await WorkerProcess.command(
            ["config", "check"], environment: ["JOB_COMMAND": "/bin/cat", "TMPDIR": temporary], directory: folder.url)
        #expect(check.status == 1 && check.stderr.contains("JOB_WORKDIR_ROOT"), "\(check)")
        reset()
        let elsewhere = folder.url.appendingPathComponent("elsewhere").path
        try FileManager.default.createDirectory(atPath: elsewhere, withIntermediateDirectories: false)
        try FileManager.default.createSymbolicLink(atPath: defaultRoot, withDestinationPath: elsewhere)
        let link = try await start(nil)
        #expect(link.status == 1 && link.output.contains("is a symlink"), "\(link.output.suffix(800))")
        reset()
        // A folder the operator chose, as Kubernetes makes an emptyDir with fsGroup: it runs, with a warning.
        let chosen = folder.url.appendingPathComponent("volume").path
        try FileManager.default.createDirectory(atPath: chosen, withIntermediateDirectories: false)
        #expect(chmod(chosen, 0o2777) == 0)
        let volume = try await start(chosen)
        #expect(volume.status == nil && volume.output.contains("JOB_WORKDIR_ROOT may be written by every user"), "\(volume.output.suffix(800))")
        if getuid() == 0 {
            // Written by a group not the worker's: a warning; by the worker's own group (fsGroup, 2775): none.
            #expect(chown(chosen, 0, 65534) == 0 && chmod(chosen, 0o2775) == 0)
            let grouped = try await start(chosen)
            #expect(grouped.status == nil && grouped.output.contains("may be written by group 65534"), "\(grouped.output.suffix(800))")
            #expect(chown(chosen, 0, getegid()) == 0 && chmod(chosen, 0o2775) == 0)
            let own = try await start(chosen)
            #expect(own.status == nil && !own.output.contains("could redirect the worker's file operations"), "\(own.output.suffix(800))")
        }
        // The default folder, missing: made, and the worker runs.
        let fresh = try await start(nil)
        #expect(fresh.status == nil, "\(fresh.output.suffix(800))")
        var status = stat()
        #expect(lstat(defaultRoot, &status) == 0 && status.st_uid == geteuid() && status.st_mode & 0o022 == 0)
    }
}

extension WorkerCommandRunTests {
    @Test("a worker that is not root removes a job's folder after the command made folders in it read-only (Go's module cache), and itself")
    func readOnlyFoldersRemoved() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("worker-readonly-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o777])
        defer {
            // As root, whatever is left.
            try? FileManager.default.removeItem(at: folder)
        }
        let jobs = folder.appendingPathComponent("jobs")
        let port = try freePort()
        // Folders without write rights, one also without read rights, one whose name is not
        // UTF-8, a link to a folder outside (never followed: the outside folder keeps its mode),
        // the job's own folder read-only last.
        let script = folder.appendingPathComponent("read-only.sh")
        try """
            #!/bin/sh
            cat > /dev/null
            mkdir -p mod/a/b mod/c && echo x > mod/a/b/f
            odd=$(printf 'mod/ro\\377') && mkdir -p "$odd/x" && echo y > "$odd/x/f"
            ln -s \(folder.path)/outside mod/link
            chmod -R a-w mod && chmod 311 mod/c && chmod 555 .
            echo '{}'
            """.write(to: script, atomically: true, encoding: .utf8)
        #expect(chmod(script.path, 0o755) == 0)
        let environment = [
            "JOB_COMMAND": script.path,
            "HEALTH_CHECK_PORT": "\(port)", "LOG_FORMAT": "json", "JOB_SANDBOX": "none", "JOB_WORKDIR_ROOT": jobs.path,
            "DATABASE_URL": "sqlite:\(folder.path)/jobs.sqlite", "HOME": folder.path, "JOB_MAX_ATTEMPTS": "1",
        ]
        let outside = folder.appendingPathComponent("outside")
        try FileManager.default.createDirectory(at: outside, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o755])
        try FileManager.default.setAttributes([.ownerAccountID: 65534], ofItemAtPath: outside.path)
        #expect(chmod(outside.path, 0o500) == 0)
        let asNobody = ["--reuid=65534", "--regid=65534", "--clear-groups"]
        let worker = try WorkerProcess(
            asNobody + [WorkerProcess.binary.path, "run"], environment: environment, directory: folder, executable: URL(fileURLWithPath: "/usr/bin/setpriv"))
        defer { worker.kill9() }
        #expect(try await eventually("health") { try await http(port: port, path: "/health").status == 200 })
        let enqueued = try await WorkerProcess.command(["enqueue", "--prompt", "p"], environment: environment, directory: folder)
        let id = enqueued.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        var status = ""
        _ = try await eventually("job \(id) finished", timeout: .seconds(30)) {
            status = jsonObject(try await WorkerProcess.command(["jobs", "show", id, "--json"], environment: environment, directory: folder).stdout)?["status"] as? String ?? ""
            return status == "completed" || status == "failed"
        }
        #expect(status == "completed", "\(worker.stdout)")
        // The job's folder is removed once its outcome is written: give it a moment.
        var left: [String] = []
        _ = try? await eventually("the job's folder removed", timeout: .seconds(5)) {
            left = ((try? FileManager.default.subpathsOfDirectory(atPath: jobs.path)) ?? []).filter { $0.contains("/work") }
            return left.isEmpty
        }
        #expect(left.isEmpty, "left behind: \(left.prefix(5))")
        var outsideStatus = stat()
        #expect(lstat(outside.path, &outsideStatus) == 0 && outsideStatus.st_mode & 0o777 == 0o500, "the link's target keeps its mode")
        worker.send(SIGTERM)
        #expect(await worker.waitForExit(timeout: .seconds(10)) == 0)
        #expect(!worker.stdout.contains("Could not remove the job's working directory"), "\(worker.stdout.suffix(2_000))")
    }
}
