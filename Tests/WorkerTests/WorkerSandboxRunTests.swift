import Foundation
import Testing
import WorkerExecution

extension ChaosTests {
    /// `worker run` with JOB_SANDBOX=bubblewrap, real bwrap: what a hostile command tries fails, the
    /// worker keeps serving, and a command still gets its prompt and its workspace.
    ///
    /// Nested in the chaos suite, so that its cases run one at a time with the chaos cases: each
    /// starts worker processes (memory hogs and fork bombs among them), and beside the rest of the
    /// suite's start they slowed timing tests elsewhere past their bounds.
    @Suite("worker run in the sandbox")
    struct Sandbox {
        static let probe = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/sandbox-probe.sh").path
        static let secret = "s3cr3t-\(UUID().uuidString)"

        /// A worker on its own SQLite file and port, with a secret in its environment and a `.env`
        /// beside it, running the probe.
        final class SandboxedWorker {
            let folder: URL
            let process: WorkerProcess
            let environment: [String: String]
            let port: Int

            init(_ extra: [String: String]) throws {
                folder = FileManager.default.temporaryDirectory.appendingPathComponent("worker-sandbox-\(UUID().uuidString)")
                try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
                port = try freePort()
                try "API_TOKEN_UNUSED=\(ChaosTests.Sandbox.secret)\n".write(to: folder.appendingPathComponent(".env"), atomically: true, encoding: .utf8)
                var environment = [
                    "JOB_COMMAND": ChaosTests.Sandbox.probe, "HEALTH_CHECK_PORT": "\(port)", "LOG_FORMAT": "json",
                    "JOB_WORKDIR_ROOT": folder.appendingPathComponent("jobs").path, "JOB_KEEP_WORKDIR": "always",
                    "DATABASE_URL": "sqlite:\(folder.appendingPathComponent("jobs.sqlite").path)",
                    "SANDBOX_TEST_SECRET": ChaosTests.Sandbox.secret, "JOB_TIMEOUT_MS": "4000", "JOB_KILL_GRACE_MS": "500",
                    "JOB_MAX_ATTEMPTS": "1", "MAX_CONCURRENT_JOBS": "2",
                ]
                environment.merge(extra) { $1 }
                self.environment = environment
                process = try WorkerProcess(environment: environment, directory: folder)
            }

            deinit {
                process.kill9()
                try? FileManager.default.removeItem(at: folder)
            }

            var database: String { folder.appendingPathComponent("jobs.sqlite").path }
            var dotenv: String { folder.appendingPathComponent(".env").path }

            /// Enqueues `prompt` and waits for the job to finish; returns the job as `jobs show --json` shows it.
            func run(_ prompt: String, session: UUID? = nil, timeout: Duration = .seconds(30)) async throws -> [String: Any] {
                let id = try await WorkerProcess.command(
                    ["enqueue", "--prompt", prompt] + (session.map { ["--session-id", $0.uuidString.lowercased()] } ?? []),
                    environment: environment, directory: folder)
                    .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
                var job: [String: Any] = [:]
                _ = try await eventually("job \(id) finished", timeout: timeout) {
                    // From the database (`jobs show`): with JOB_NETWORK=host the job API refuses
                    // this machine's requests without API_TOKEN, which these workers leave unset.
                    job = jsonObject(try await WorkerProcess.command(["jobs", "show", id, "--json"], environment: environment, directory: folder).stdout) ?? [:]
                    return ["completed", "failed"].contains(job["status"] as? String ?? "")
                }
                return job
            }
        }

        /// Two turns of one new session: `prompt`, then a turn whose change summary stages the work
        /// tree (git then runs what the first turn configured). Both must complete; returns the second.
        static func turnAfter(_ prompt: String, on worker: SandboxedWorker) async throws -> [String: Any] {
            let session = UUID()
            let first = try await worker.run(prompt, session: session)
            #expect(first["status"] as? String == "completed", "\(first)")
            let second = try await worker.run("stdin", session: session)
            #expect(second["status"] as? String == "completed", "\(second)")
            return second
        }

        @Test("a hostile command reads no secret or host file, writes only its workspace and /tmp, reaches no host port; unconfined it could")
        func escapesFail() async throws {
            #expect(JobSandbox.locate() != nil, "bwrap is installed (scripts/test installs Debian's bubblewrap)")
            let other = try TemporaryDirectory()
            try "another job's file".write(to: other.url.appendingPathComponent("notes.txt"), atomically: true, encoding: .utf8)
            let postgresPort = URL(string: ProcessInfo.processInfo.environment["TEST_DATABASE_URL"] ?? "")?.port

            for (network, sandbox) in [("none", "bubblewrap"), ("host", "bubblewrap"), ("host", "none")] {
                let worker = try SandboxedWorker(["JOB_SANDBOX": sandbox, "JOB_NETWORK": network])
                defer { worker.process.kill9() }
                #expect(try await eventually("health") { try await http(port: worker.port, path: "/health").status == 200 })
                let ports = [worker.port] + (postgresPort.map { [$0] } ?? [])
                let job = try await worker.run("escape \(worker.dotenv) \(worker.database) \(other.url.path) \(ports.map(String.init).joined(separator: " "))")
                let result = try #require(job["result"] as? [String: Any], "\(job)")
                let reached = result["ports"] as? [String: Bool] ?? [:]
                let label = "JOB_SANDBOX=\(sandbox) JOB_NETWORK=\(network): \(result)"
                if sandbox == "bubblewrap" {
                    #expect(result["envLeak"] as? Bool == false, "\(label)")
                    #expect(result["dotenv"] as? Bool == false, "\(label)")
                    #expect(result["database"] as? Bool == false, "\(label)")
                    #expect(result["otherWorkspace"] as? Bool == false, "\(label)")
                    #expect(result["writeUsr"] as? Bool == false, "\(label)")
                    #expect(result["writeRoot"] as? Bool == false, "\(label)")
                    // This worker runs as root with no JOB_USER, so bwrap starts as root: the
                    // command has no capability to remount, and /proc's host controls are read-only.
                    #expect(result["remountUsr"] as? Bool == false, "\(label)")
                    #expect(result["writeProcSys"] as? Bool == false, "\(label)")
                    #expect(result["writeSysrq"] as? Bool == false, "\(label)")
                    // Docker's read-only /proc entries, where this kernel has them, and its masks.
                    let readOnly = Set(((result["procReadOnly"] as? String) ?? "").split(separator: " ").map(String.init))
                    for entry in ["/proc/fs", "/proc/acpi", "/proc/driver", "/proc/scsi", "/proc/mtrr"] where FileManager.default.fileExists(atPath: entry) {
                        #expect(readOnly.contains(entry), "\(entry) writable: \(label)")
                    }
                    #expect(result["keysBytes"] as? Int == 0, "\(label)")
                    // /dev holds its devices only (a tmpfs of half the memory before); /dev/shm works.
                    #expect(result["writeDev"] as? Bool == false && result["writeShm"] as? Bool == true, "\(label)")
                    #expect(result["writeWorkspace"] as? Bool == true, "\(label)")
                    #expect(result["writeTmp"] as? Bool == true, "\(label)")
                    #expect(result["pwd"] as? String == JobSandbox.workspacePath, "\(label)")
                    #expect(reached.count == ports.count && reached.values.allSatisfy { $0 == (network == "host") }, "\(label)")
                    // A command on this machine's network reaches the worker's port: without the
                    // token, the job API and the dashboard refuse 127.0.0.1 too.
                    let open = try await http(port: worker.port, path: "/jobs/\(UUID().uuidString.lowercased())")
                    #expect(open.status == (network == "host" ? 403 : 404), "\(label): \(open)")
                    if network == "host" {
                        #expect(open.body.contains("JOB_NETWORK=host"), "\(open.body)")
                        #expect(try await http(port: worker.port, path: "/ui").status == 403)
                    }
                    // The worker's log says how commands run.
                    #expect(worker.process.stdout.contains("Job sandbox: bubblewrap"))
                } else {
                    // The control: the same probe, unconfined, finds what the sandbox hides.
                    #expect(result["envLeak"] as? Bool == true, "\(label)")
                    #expect(result["dotenv"] as? Bool == true && result["database"] as? Bool == true, "\(label)")
                    #expect(result["otherWorkspace"] as? Bool == true, "\(label)")
                    #expect(reached.values.allSatisfy { $0 }, "\(label)")
                }
                #expect(try await http(port: worker.port, path: "/health").status == 200)
                worker.process.send(SIGTERM)
                #expect(await worker.process.waitForExit(timeout: .seconds(10)) == 0)
            }
        }

        @Test("in the sandbox the prompt arrives byte for byte, and a grandchild in its own session that ignores SIGTERM dies with its job")
        func promptAndGrandchild() async throws {
            let worker = try SandboxedWorker(["JOB_SANDBOX": "bubblewrap"])
            defer { worker.process.kill9() }
            #expect(try await eventually("health") { try await http(port: worker.port, path: "/health").status == 200 })
            let prompt = "stdin\n  caf\u{e9} \u{1F600}\ttabs\r\nlast line without newline  "
            let job = try await worker.run(prompt)
            let digest = try #require((job["result"] as? [String: Any])?["sha256"] as? String, "\(job)")
            let expected = try await WorkerProcess.command(["-c", "printf '%s' \"$0\" | sha256sum", prompt], environment: [:], directory: worker.folder, executable: URL(fileURLWithPath: "/bin/sh"))
            #expect(digest == String(expected.stdout.prefix(64)))

            let token = String(Int.random(in: 100_000...999_999))
            let orphan = try await worker.run("orphan \(token)")
            #expect(orphan["status"] as? String == "failed")
            #expect((orphan["lastError"] as? String ?? orphan["last_error"] as? String ?? "").contains("timed out"), "\(orphan)")
            // The grandchild (its command line `sleep 300.TOKEN`) is gone once the job is.
            #expect(try await eventually("grandchild gone", timeout: .seconds(5)) {
                let found = try await WorkerProcess.command(["-f", "sleep 300.\(token)"], environment: [:], directory: worker.folder, executable: URL(fileURLWithPath: "/usr/bin/pgrep"))
                return found.status == 1
            })
            #expect(try await http(port: worker.port, path: "/health").status == 200)
        }

        @Test("a repository the command configured to run a program on git add (a filter): the change summary's git never runs it, sandboxed or not, and the summary still works")
        func changeSummaryGitRunsNoFilter() async throws {
            for sandbox in ["bubblewrap", "none"] {
                let worker = try SandboxedWorker(["JOB_SANDBOX": sandbox, "JOB_WORKSPACE": "session", "JOB_GIT_CHANGES": "true"])
                #expect(try await eventually("health") { try await http(port: worker.port, path: "/health").status == 200 })
                let marker = worker.folder.appendingPathComponent("escaped-\(sandbox)").path
                let second = try await Self.turnAfter("gitpwn \(marker)", on: worker)
                #expect((second["result"] as? [String: Any])?["changes"] != nil, "\(second)")
                // Before: unconfined, the filter ran as the worker (this mark); sandboxed, it ran
                // in git's sandbox, outside the command's time and disk limits, and could fill
                // the workspace (the mark in it).
                #expect(!FileManager.default.fileExists(atPath: marker), "JOB_SANDBOX=\(sandbox): the filter ran on the host")
                let sessions = worker.folder.appendingPathComponent("jobs/sessions")
                let inWorkspace = (FileManager.default.enumerator(atPath: sessions.path)?.allObjects as? [String] ?? []).filter { $0.hasSuffix(".filter-ran") }
                #expect(inWorkspace.isEmpty, "JOB_SANDBOX=\(sandbox): the filter ran in the workspace: \(inWorkspace)")
                worker.process.send(SIGTERM)
                #expect(await worker.process.waitForExit(timeout: .seconds(10)) == 0)
            }
        }

        /// A `git` first in the worker's PATH that records something of each run of the change
        /// summary's git (those with `GIT_INDEX_FILE`) in `marker`, then runs the real one.
        static func recordingGit(in folder: URL, recording command: String, marker: String) throws -> String {
            let bin = folder.appendingPathComponent("git-bin")
            try FileManager.default.createDirectory(at: bin, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: folder.path)
            let script = bin.appendingPathComponent("git")
            try """
                #!/bin/sh
                if [ -n "$GIT_INDEX_FILE" ]; then \(command) >> '\(marker)' 2>/dev/null; fi
                exec /usr/bin/git "$@"
                """.write(to: script, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: script.path)
            return bin.path + ":/usr/local/bin:/usr/bin:/bin"
        }

        @Test("a filter of the repository cannot swap what the sandbox mounts next (payload.json beside git's index) for a host file")
        func changeSummaryScratchIsGitsOwn() async throws {
            let worker = try SandboxedWorker(["JOB_SANDBOX": "bubblewrap", "JOB_WORKSPACE": "session", "JOB_GIT_CHANGES": "true"])
            #expect(try await eventually("health") { try await http(port: worker.port, path: "/health").status == 200 })
            // A host file outside every mount of the sandbox, readable by the worker.
            let token = "host-only-\(UUID().uuidString)"
            let secretFile = worker.folder.appendingPathComponent("host-secret").path
            try token.write(toFile: secretFile, atomically: true, encoding: .utf8)
            let session = UUID()
            let first = try await worker.run("gitswap \(secretFile)", session: session)
            #expect(first["status"] as? String == "completed", "\(first)")
            let second = try await worker.run("payload \(token)", session: session)
            #expect(second["status"] as? String == "completed", "\(second)")
            #expect((second["result"] as? [String: Any])?["leaked"] as? Bool == false, "the job read a host file as its payload: \(second)")
            worker.process.send(SIGTERM)
            #expect(await worker.process.waitForExit(timeout: .seconds(10)) == 0)
        }

        @Test("JOB_USER without the sandbox: the command cannot swap the folder of git's private index, which the worker writes as root after it, for a symlink")
        func changeSummaryScratchNotTheCommands() async throws {
            try #require(getuid() == 0, "JOB_USER needs a root worker; this suite runs as root on its machines")
            let worker = try SandboxedWorker(["JOB_SANDBOX": "none", "JOB_USER": "nobody", "JOB_WORKSPACE": "session", "JOB_GIT_CHANGES": "true"])
            #expect(try await eventually("health") { try await http(port: worker.port, path: "/health").status == 200 })
            // A folder only root may write: the worker's index copy must never land there.
            let target = worker.folder.appendingPathComponent("root-only")
            try FileManager.default.createDirectory(at: target, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
            let job = try await worker.run("gitdirswap \(target.path)", session: UUID())
            #expect(job["status"] as? String == "completed", "\(job)")
            // Before: the attempt's folder was the command's, and the swap succeeded.
            #expect((job["result"] as? [String: Any])?["swapped"] as? Bool == false, "\(job)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: target.path).isEmpty)
            worker.process.send(SIGTERM)
            #expect(await worker.process.waitForExit(timeout: .seconds(10)) == 0)
        }

        @Test("a repository whose index is a FIFO: the change summary is left out and the turns end, instead of the worker waiting on the FIFO for good")
        func changeSummaryIndexFIFO() async throws {
            for sandbox in ["bubblewrap", "none"] {
                let worker = try SandboxedWorker(["JOB_SANDBOX": sandbox, "JOB_WORKSPACE": "session", "JOB_GIT_CHANGES": "true"])
                #expect(try await eventually("health") { try await http(port: worker.port, path: "/health").status == 200 })
                let session = UUID()
                let first = try await worker.run("gitfifo", session: session, timeout: .seconds(20))
                #expect(first["status"] as? String == "completed", "JOB_SANDBOX=\(sandbox): \(first)")
                let second = try await worker.run("stdin", session: session, timeout: .seconds(20))
                #expect(second["status"] as? String == "completed", "JOB_SANDBOX=\(sandbox): \(second)")
                worker.process.send(SIGTERM)
                #expect(await worker.process.waitForExit(timeout: .seconds(10)) == 0)
                // Whatever waits on the FIFO (the old worker did) is opened and let go.
                for fifo in (try? FileManager.default.subpathsOfDirectory(atPath: worker.folder.path)) ?? [] where fifo.hasSuffix(".git/index") {
                    let path = worker.folder.appendingPathComponent(fifo).path
                    let fd = open(path, O_WRONLY | O_NONBLOCK)
                    if fd >= 0 { close(fd) }
                }
                worker.process.kill9()
            }
        }

        @Test("with limits, the change summary's git runs in a control group of its own: what runs in it is bounded, and what it leaves running is stopped")
        func changeSummaryGitWithinLimits() async throws {
            // Unconfined, where nothing else would stop what git leaves behind. git itself (a
            // wrapper in PATH) records its control groups and leaves a process behind: git runs
            // no program a repository names any more, so this stands for whatever git might run.
            let scratch = try TemporaryDirectory()
            let token = String(Int.random(in: 100_000...999_999))
            let marker = scratch.url.appendingPathComponent("git-cgroups").path
            let path = try Self.recordingGit(
                in: scratch.url, recording: "{ cat /proc/self/cgroup; setsid sleep 300.\(token) > /dev/null 2>&1 < /dev/null & }", marker: marker)
            let worker = try SandboxedWorker([
                "JOB_SANDBOX": "none", "JOB_WORKSPACE": "session", "JOB_GIT_CHANGES": "true", "JOB_PIDS_LIMIT": "64", "PATH": path,
            ])
            defer { worker.process.kill9() }
            #expect(try await eventually("health") { try await http(port: worker.port, path: "/health").status == 200 })
            _ = try await Self.turnAfter("gitpwn \(scratch.url.appendingPathComponent("unused").path)", on: worker)
            let groups = (try? String(contentsOfFile: marker, encoding: .utf8)) ?? ""
            #expect(groups.contains("/mobvibe-worker-") && groups.contains("/git-"), "git ran outside the limits: \(groups)")
            #expect(try await eventually("git's leftover gone", timeout: .seconds(5)) {
                let found = try await WorkerProcess.command(["-f", "sleep 300.\(token)"], environment: [:], directory: worker.folder, executable: URL(fileURLWithPath: "/usr/bin/pgrep"))
                return found.status == 1
            })
            worker.process.send(SIGTERM)
            #expect(await worker.process.waitForExit(timeout: .seconds(10)) == 0)
        }

        @Test("limits: memory without end fails with out_of_memory, a fork bomb with pids_limit, within seconds; /health answers and the next job runs")
        func limitsStopRunawayCommands() async throws {
            for sandbox in ["bubblewrap", "none"] {
                let worker = try SandboxedWorker([
                    "JOB_SANDBOX": sandbox, "JOB_MEMORY_LIMIT_MB": "64", "JOB_PIDS_LIMIT": "64", "JOB_CPU_LIMIT": "0.5", "JOB_TIMEOUT_MS": "60000",
                ])
                #expect(try await eventually("health") { try await http(port: worker.port, path: "/health").status == 200 })
                #expect(worker.process.stdout.contains("Job limits: memory 64 MiB, CPU 0.5 cores, 64 processes per attempt, enforced with cgroup"))
                let clock = ContinuousClock()
                for (prompt, reason) in [("hog", "out_of_memory"), ("bomb", "pids_limit")] {
                    let start = clock.now
                    let job = try await worker.run(prompt, timeout: .seconds(40))
                    let error = job["lastError"] as? String ?? job["last_error"] as? String ?? ""
                    #expect(job["status"] as? String == "failed" && error.hasPrefix(reason), "JOB_SANDBOX=\(sandbox) \(prompt): \(job)")
                    #expect(clock.now - start < .seconds(20), "JOB_SANDBOX=\(sandbox) \(prompt) took \(clock.now - start)")
                    #expect(try await http(port: worker.port, path: "/health").status == 200)
                }
                let metrics = try await http(port: worker.port, path: "/metrics").body
                #expect(metrics.contains(#"reason="out_of_memory""#) && metrics.contains(#"reason="pids_limit""#))
                // The worker goes on: the next job runs within the same limits.
                let next = try await worker.run("stdin")
                #expect(next["status"] as? String == "completed", "\(next)")
                // Each attempt is measured in its group: the job shows what it used.
                #expect((next["peak_memory_bytes"] as? Int ?? 0) > 0 && (next["run_seconds"] as? Double ?? 0) > 0, "\(next)")
                #expect(metrics.contains("worker_job_peak_memory_bytes_bucket"))
                worker.process.send(SIGTERM)
                #expect(await worker.process.waitForExit(timeout: .seconds(15)) == 0)
            }
        }

        @Test("disk: one file without end, many files each below the limit, and a writer that ignores SIGTERM fail with disk_limit within seconds, in and out of the sandbox; /health answers and the next job runs")
        func diskLimitStopsWriters() async throws {
            for sandbox in ["bubblewrap", "none"] {
                // A long grace, which a command past its disk limit does not get: before, the
                // stubborn writer went on for all of it (30 s, 100 MiB/s) outside the sandbox.
                let worker = try SandboxedWorker(["JOB_SANDBOX": sandbox, "JOB_DISK_LIMIT_MB": "32", "JOB_TIMEOUT_MS": "60000", "JOB_KILL_GRACE_MS": "30000"])
                #expect(try await eventually("health") { try await http(port: worker.port, path: "/health").status == 200 })
                #expect(worker.process.stdout.contains("Job limits: disk 32 MiB per attempt"), "\(worker.process.stdout)")
                let clock = ContinuousClock()
                // In the sandbox /tmp counts too (it is then on disk, beside the workspace).
                for prompt in ["fill", sandbox == "bubblewrap" ? "spray /tmp/parts" : "spray parts", "stubborn parts"] {
                    let start = clock.now
                    let job = try await worker.run(prompt, timeout: .seconds(40))
                    let error = job["lastError"] as? String ?? job["last_error"] as? String ?? ""
                    #expect(job["status"] as? String == "failed" && error.hasPrefix("disk_limit") && error.contains("JOB_DISK_LIMIT_MB=32"),
                            "JOB_SANDBOX=\(sandbox) \(prompt): \(job)")
                    #expect(clock.now - start < .seconds(20), "JOB_SANDBOX=\(sandbox) \(prompt) took \(clock.now - start)")
                    #expect(try await http(port: worker.port, path: "/health").status == 200)
                }
                #expect(try await http(port: worker.port, path: "/metrics").body.contains(#"reason="disk_limit""#))
                let next = try await worker.run("stdin")
                #expect(next["status"] as? String == "completed", "\(next)")
                worker.process.send(SIGTERM)
                #expect(await worker.process.waitForExit(timeout: .seconds(15)) == 0)
            }
        }

        @Test("a timed-out command gets SIGTERM and its JOB_KILL_GRACE_MS to save its work, in the sandbox as out of it; its last lines are kept")
        func gracefulStopInTheSandbox() async throws {
            for sandbox in ["bubblewrap", "none"] {
                let worker = try SandboxedWorker(["JOB_SANDBOX": sandbox, "JOB_TIMEOUT_MS": "1500", "JOB_KILL_GRACE_MS": "5000"])
                #expect(try await eventually("health") { try await http(port: worker.port, path: "/health").status == 200 })
                let job = try await worker.run("graceful", timeout: .seconds(30))
                let id = try #require(job["id"] as? String, "\(job)")
                #expect(job["status"] as? String == "failed", "JOB_SANDBOX=\(sandbox): \(job)")
                let logs = try await WorkerProcess.command(["jobs", "logs", id], environment: worker.environment, directory: worker.folder)
                // Before, in the sandbox: SIGTERM went to bwrap, whose end ended the namespace at
                // once; the trap never ran.
                #expect(logs.stdout.contains("got-term") && logs.stdout.contains("saved"), "JOB_SANDBOX=\(sandbox): \(logs.stdout.suffix(600))")
                worker.process.send(SIGTERM)
                #expect(await worker.process.waitForExit(timeout: .seconds(15)) == 0)
            }
        }

        @Test("JOB_USER: a root worker runs commands as that user, in and out of the sandbox, with and without limits (worker-launch)")
        func commandsRunAsJobUser() async throws {
            try #require(getuid() == 0, "JOB_USER needs a root worker; this suite runs as root on its machines")
            for sandbox in ["bubblewrap", "none"] {
                for limited in [false, true] {
                    let worker = try SandboxedWorker(
                        ["JOB_SANDBOX": sandbox, "JOB_USER": "nobody", "JOB_WORKSPACE": "session"]
                            .merging(limited ? ["JOB_MEMORY_LIMIT_MB": "256", "JOB_DISK_LIMIT_MB": "64"] : [:]) { $1 })
                    let label = "JOB_SANDBOX=\(sandbox) limits=\(limited)"
                    #expect(try await eventually("health") { try await http(port: worker.port, path: "/health").status == 200 }, "\(label)")
                    #expect(worker.process.stdout.contains("Job user: commands run as nobody (uid 65534"), "\(label)")
                    // A session's lasting workspace, then a job's own directory.
                    for session in [UUID(), nil] {
                        let job = try await worker.run("whoami", session: session)
                        let result = job["result"] as? [String: Any] ?? [:]
                        #expect(job["status"] as? String == "completed", "\(label): \(job)")
                        #expect(result["uid"] as? Int == 65534 && result["gid"] as? Int == 65534 && result["user"] as? String == "nobody", "\(label): \(result)")
                        #expect(result["writeWorkspace"] as? Bool == true, "\(label): \(result)")
                        if sandbox == "bubblewrap" { #expect(result["writeTmp"] as? Bool == true, "\(label): \(result)") }
                    }
                    worker.process.send(SIGTERM)
                    #expect(await worker.process.waitForExit(timeout: .seconds(10)) == 0)
                }
            }
        }

        @Test("JOB_USER without a sandbox: the change summary's git runs as that user, never as root, and works on the user's repository")
        func changeSummaryGitRunsAsJobUser() async throws {
            try #require(getuid() == 0, "JOB_USER needs a root worker; this suite runs as root on its machines")
            // Somewhere the user may write, for git (a wrapper in PATH) to record whom it runs as.
            let scratch = try TemporaryDirectory()
            let drop = scratch.url.appendingPathComponent("drop")
            try FileManager.default.createDirectory(at: drop, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o777])
            let marker = drop.appendingPathComponent("ran").path
            let path = try Self.recordingGit(in: scratch.url, recording: "id -u", marker: marker)
            let worker = try SandboxedWorker(["JOB_SANDBOX": "none", "JOB_USER": "nobody", "JOB_WORKSPACE": "session", "JOB_GIT_CHANGES": "true", "PATH": path])
            #expect(try await eventually("health") { try await http(port: worker.port, path: "/health").status == 200 })
            let second = try await Self.turnAfter("gitpwn \(drop.appendingPathComponent("unused").path)", on: worker)
            // The summary works on a repository the user owns (git as root would refuse it as "dubious").
            #expect((second["result"] as? [String: Any])?["changes"] != nil, "\(second)")
            let users = Set(((try? String(contentsOfFile: marker, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init))
            #expect(users == ["65534"], "the summary's git ran as uids \(users)")
            worker.process.send(SIGTERM)
            #expect(await worker.process.waitForExit(timeout: .seconds(10)) == 0)
        }

        @Test("disk: files hidden in a folder made unreadable or unsearchable, or named with bytes that are not UTF-8, or deleted while held open, still count against JOB_DISK_LIMIT_MB (a worker that is not root, commands of its own user)")
        func diskLimitNotHidden() async throws {
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("worker-disk-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o777])
            defer { try? FileManager.default.removeItem(at: folder) }
            let port = try freePort()
            let environment = [
                "JOB_COMMAND": Self.probe, "HEALTH_CHECK_PORT": "\(port)", "LOG_FORMAT": "json", "JOB_SANDBOX": "none",
                "JOB_WORKDIR_ROOT": folder.appendingPathComponent("jobs").path, "DATABASE_URL": "sqlite:\(folder.path)/jobs.sqlite",
                "HOME": folder.path, "JOB_DISK_LIMIT_MB": "8", "JOB_MAX_ATTEMPTS": "1", "JOB_TIMEOUT_MS": "30000",
            ]
            let asNobody = ["--reuid=65534", "--regid=65534", "--clear-groups"]
            let worker = try WorkerProcess(
                asNobody + [WorkerProcess.binary.path, "run"], environment: environment, directory: folder, executable: URL(fileURLWithPath: "/usr/bin/setpriv"))
            defer { worker.kill9() }
            #expect(try await eventually("health") { try await http(port: port, path: "/health").status == 200 })
            // (Before: a folder that may be listed but not searched, and one whose name is not
            // UTF-8, hid what they held.)
            for prompt in ["hide d", "hide r 400", "hidename", "unlinked"] {
                try await runProbe(prompt, environment: environment)
            }
            worker.send(SIGTERM)
            #expect(await worker.waitForExit(timeout: .seconds(10)) == 0)
            // In the sandbox too (bwrap's new session: the command is not in the process group the
            // worker started), with no control group (no memory or process limit).
            var sandboxed = environment
            sandboxed["JOB_SANDBOX"] = "bubblewrap"
            sandboxed["HEALTH_CHECK_PORT"] = "\(try freePort())"
            let second = try WorkerProcess(
                asNobody + [WorkerProcess.binary.path, "run"], environment: sandboxed, directory: folder, executable: URL(fileURLWithPath: "/usr/bin/setpriv"))
            defer { second.kill9() }
            #expect(try await eventually("health") { try await http(port: Int(sandboxed["HEALTH_CHECK_PORT"]!)!, path: "/health").status == 200 })
            for prompt in ["unlinked", "hide r 400", "hidename"] {
                try await runProbe(prompt, environment: sandboxed)
            }
            second.send(SIGTERM)
            #expect(await second.waitForExit(timeout: .seconds(10)) == 0)

            func runProbe(_ prompt: String, environment: [String: String]) async throws {
                let port = Int(environment["HEALTH_CHECK_PORT"]!)!
                let id = try await WorkerProcess.command(["enqueue", "--prompt", prompt], environment: environment, directory: folder)
                    .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
                var job: [String: Any] = [:]
                _ = try await eventually("job \(id) finished", timeout: .seconds(30)) {
                    job = jsonObject(try await http(port: port, path: "/jobs/\(id)").body) ?? [:]
                    return ["completed", "failed"].contains(job["status"] as? String ?? "")
                }
                let error = job["lastError"] as? String ?? job["last_error"] as? String ?? ""
                #expect(job["status"] as? String == "failed" && error.hasPrefix("disk_limit"), "JOB_SANDBOX=\(environment["JOB_SANDBOX"]!) \(prompt): \(job)")
            }
        }

        @Test("a worker killed with SIGKILL left an unsandboxed command running in its control group: the next worker's start stops it and removes the group")
        func abandonedGroupsStopped() async throws {
            let token = String(Int.random(in: 100_000...999_999))
            let extra = ["JOB_SANDBOX": "none", "JOB_PIDS_LIMIT": "64", "JOB_TIMEOUT_MS": "600000"]
            let first = try SandboxedWorker(extra)
            #expect(try await eventually("health") { try await http(port: first.port, path: "/health").status == 200 })
            let pgrep = URL(fileURLWithPath: "/usr/bin/pgrep")
            func leftover() async throws -> Bool {
                try await WorkerProcess.command(["-f", "sleep 300.\(token)"], environment: [:], directory: first.folder, executable: pgrep).status == 0
            }
            _ = try await WorkerProcess.command(["enqueue", "--prompt", "orphan \(token)"], environment: first.environment, directory: first.folder)
            #expect(try await eventually("the command's grandchild running") { try await leftover() })
            let group = "\(JobCgroups.mountPoint)/memory/mobvibe-worker-\(first.process.pid)"
            first.process.kill9()
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await leftover(), "the grandchild outlived its worker")
            // The next worker on this machine (its own folder and port).
            let second = try SandboxedWorker(extra)
            defer { second.process.kill9() }
            #expect(try await eventually("health") { try await http(port: second.port, path: "/health").status == 200 })
            #expect(try await eventually("the left-over command stopped", timeout: .seconds(5)) { try await !leftover() })
            #expect(!FileManager.default.fileExists(atPath: group), "the dead worker's group removed")
            second.process.send(SIGTERM)
            #expect(await second.process.waitForExit(timeout: .seconds(10)) == 0)
        }

        @Test("JOB_USER with a bubblewrap only root may run: the start-up trial, run as that user as commands are, stops start-up instead of every job failing")
        func trialAsJobUser() async throws {
            try #require(getuid() == 0, "JOB_USER needs a root worker; this suite runs as root on its machines")
            let bin = FileManager.default.temporaryDirectory.appendingPathComponent("worker-bwrap-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(at: bin, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
            defer { try? FileManager.default.removeItem(at: bin) }
            let bwrap = try #require(JobSandbox.locate(), "bwrap is installed")
            try FileManager.default.copyItem(atPath: bwrap, toPath: bin.appendingPathComponent("bwrap").path)
            #expect(chmod(bin.appendingPathComponent("bwrap").path, 0o700) == 0)
            let worker = try SandboxedWorker([
                "JOB_SANDBOX": "bubblewrap", "JOB_USER": "nobody", "PATH": "\(bin.path):/usr/local/bin:/usr/bin:/bin",
            ])
            let status = await worker.process.waitForExit(timeout: .seconds(20))
            let output = worker.process.stdout + worker.process.stderr
            #expect(status == 1, "\(output.suffix(1500))")
            #expect(output.contains("JOB_SANDBOX") && output.contains("as JOB_USER nobody"), "\(output.suffix(1500))")
        }

        @Test("limits without control groups (a worker that is not root): memory and processes are bounded with rlimits, said at start-up; a CPU limit stops start-up")
        func rlimitFallback() async throws {
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("worker-rlimits-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o777])
            defer { try? FileManager.default.removeItem(at: folder) }
            let port = try freePort()
            var environment = [
                "JOB_COMMAND": Self.probe, "HEALTH_CHECK_PORT": "\(port)", "LOG_FORMAT": "json", "JOB_SANDBOX": "bubblewrap",
                "JOB_WORKDIR_ROOT": folder.appendingPathComponent("jobs").path, "DATABASE_URL": "sqlite:\(folder.path)/jobs.sqlite",
                "HOME": folder.path, "JOB_MEMORY_LIMIT_MB": "64", "JOB_PIDS_LIMIT": "200", "JOB_MAX_ATTEMPTS": "1", "JOB_TIMEOUT_MS": "30000",
            ]
            let asNobody = ["--reuid=65534", "--regid=65534", "--clear-groups"]
            let setpriv = URL(fileURLWithPath: "/usr/bin/setpriv")
            let worker = try WorkerProcess(asNobody + [WorkerProcess.binary.path, "run"], environment: environment, directory: folder, executable: setpriv)
            defer { worker.kill9() }
            #expect(try await eventually("health") { try await http(port: port, path: "/health").status == 200 })
            #expect(worker.stdout.contains("RLIMIT_DATA") && worker.stdout.contains("RLIMIT_NPROC") && worker.stdout.contains("no control groups"), "\(worker.stdout)")
            func run(_ prompt: String) async throws -> [String: Any] {
                let id = try await WorkerProcess.command(["enqueue", "--prompt", prompt], environment: environment, directory: folder)
                    .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
                var job: [String: Any] = [:]
                _ = try await eventually("job \(id) finished", timeout: .seconds(40)) {
                    job = jsonObject(try await http(port: port, path: "/jobs/\(id)").body) ?? [:]
                    return ["completed", "failed"].contains(job["status"] as? String ?? "")
                }
                return job
            }
            // Memory without end: the allocation past the bound fails, and so does the job, at once
            // (its own error: an rlimit kills nothing, so there is no limit to name).
            let clock = ContinuousClock(), start = clock.now
            let hog = try await run("hog")
            #expect(hog["status"] as? String == "failed", "\(hog)")
            #expect(clock.now - start < .seconds(20), "the memory hog took \(clock.now - start)")
            #expect(try await http(port: port, path: "/health").status == 200)
            let next = try await run("whoami")
            #expect(next["status"] as? String == "completed" && (next["result"] as? [String: Any])?["uid"] as? Int == 65534, "\(next)")
            worker.send(SIGTERM)
            #expect(await worker.waitForExit(timeout: .seconds(10)) == 0)

            environment["JOB_CPU_LIMIT"] = "0.5"
            environment["HEALTH_CHECK_PORT"] = "\(try freePort())"
            let refused = try WorkerProcess(asNobody + [WorkerProcess.binary.path, "run"], environment: environment, directory: folder, executable: setpriv)
            defer { refused.kill9() }
            #expect(await refused.waitForExit(timeout: .seconds(15)) == 1)
            #expect(refused.stderr.contains("JOB_CPU_LIMIT") && refused.stderr.contains("control groups"), "\(refused.stderr)")
        }

        @Test("unconfined, a command of the worker's own user cannot read the worker's environment (non-dumpable), though it can read another process's of that user")
        func workerIsNotDumpable() async throws {
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent("worker-dumpable-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o777])
            defer { try? FileManager.default.removeItem(at: folder) }
            let port = try freePort()
            let environment = [
                "JOB_COMMAND": Self.probe, "HEALTH_CHECK_PORT": "\(port)", "LOG_FORMAT": "json", "JOB_SANDBOX": "none",
                "JOB_WORKDIR_ROOT": folder.appendingPathComponent("jobs").path, "DATABASE_URL": "sqlite:\(folder.path)/jobs.sqlite",
                "SANDBOX_TEST_SECRET": Self.secret, "HOME": folder.path,
            ]
            // The worker and a bystander, both as an unprivileged user (as root, everything is readable anyway).
            let asNobody = ["--reuid=65534", "--regid=65534", "--clear-groups"]
            let setpriv = URL(fileURLWithPath: "/usr/bin/setpriv")
            let worker = try WorkerProcess(asNobody + [WorkerProcess.binary.path, "run"], environment: environment, directory: folder, executable: setpriv)
            defer { worker.kill9() }
            let bystander = try WorkerProcess(asNobody + ["/bin/sleep", "60"], environment: ["SANDBOX_TEST_SECRET": Self.secret], directory: folder, executable: setpriv)
            defer { bystander.kill9() }
            #expect(try await eventually("health") { try await http(port: port, path: "/health").status == 200 })
            let id = try await WorkerProcess.command(["enqueue", "--prompt", "escape /nonexistent /nonexistent /nonexistent"], environment: environment, directory: folder)
                .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            var job: [String: Any] = [:]
            #expect(try await eventually("job done") {
                job = jsonObject(try await http(port: port, path: "/jobs/\(id)").body) ?? [:]
                return job["status"] as? String == "completed"
            })
            let result = try #require(job["result"] as? [String: Any], "\(job) \(worker.stderr)")
            #expect(result["parentEnvLeak"] as? Bool == false, "the worker's environment was readable: \(result)")
            #expect(result["envLeak"] as? Bool == true, "the control: the bystander's environment is readable to its user: \(result)")
            worker.send(SIGTERM)
            #expect(await worker.waitForExit(timeout: .seconds(10)) == 0)
        }

        @Test("JOB_SANDBOX=bubblewrap that cannot work stops start-up with a message saying what to do")
        func brokenSandboxStopsStartup() async throws {
            let folder = try TemporaryDirectory()
            // No bwrap in this PATH.
            let result = try await WorkerProcess.command(
                ["run"],
                environment: ["JOB_SANDBOX": "bubblewrap", "JOB_COMMAND": "/bin/cat", "PATH": "/nonexistent", "HEALTH_CHECK_PORT": "\(try freePort())"],
                directory: folder.url)
            #expect(result.status == 1)
            #expect(result.stderr.contains("JOB_SANDBOX") && result.stderr.contains("bubblewrap") && result.stderr.contains("JOB_SANDBOX=none"), "\(result.stderr)")
            let production = try await WorkerProcess.command(
                ["config", "check"],
                // (The test harness sets JOB_SANDBOX=none; automatic is what unset means.)
                environment: ["APP_ENV": "production", "JOB_COMMAND": "/bin/cat", "PATH": "/nonexistent", "JOB_SANDBOX": "automatic", "DATABASE_URL": "sqlite:\(folder.url.path)/db.sqlite"],
                directory: folder.url)
            #expect(production.status == 1 && production.stderr.contains("JOB_SANDBOX"), "\(production.stderr)")
        }
    }
}
