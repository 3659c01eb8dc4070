import Foundation
import Logging
import Testing
import WorkerCore
@testable import WorkerExecution

/// The command handler with real child processes (the scripts in Fixtures/).
@Suite("CommandHandler")
struct CommandHandlerTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    static func fixture(_ name: String) -> String { fixtures.appendingPathComponent(name).path }

    static func claimed(prompt: String = "p", payload: String = "{}", attempt: Int = 1) -> ClaimedJob {
        let job = Job(id: UUID(), sessionID: UUID(), prompt: prompt, payload: payload, status: .processing, runAt: Date(), attempts: attempt, maxAttempts: 3, createdAt: Date())
        return ClaimedJob(job: job, lease: Lease(jobID: job.id, workerID: "w", attempt: attempt, expiresAt: Date()))
    }

    static let context = JobContext(logger: Logger(label: "test"), workerID: "w")

    static func handler(
        _ script: String,
        timeout: Duration = .seconds(30),
        killGrace: Duration = .seconds(1),
        limit: Int = 1_048_576,
        keep: CommandHandlerConfiguration.KeepWorkdir = .never,
        passthrough: [String] = [],
        permanent: Set<Int32> = [],
        environment: [String: String] = ProcessInfo.processInfo.environment,
        root: String = FileManager.default.temporaryDirectory.appendingPathComponent("cmd-tests-\(UUID().uuidString.prefix(8))").path
    ) throws -> CommandHandler {
        let configuration = try CommandHandlerConfiguration(
            command: "'\(fixture(script))'",
            workdirRoot: root,
            keepWorkdir: keep,
            environmentPassthrough: passthrough,
            timeout: timeout,
            killGrace: killGrace,
            outputLimitBytes: limit,
            permanentExitCodes: permanent
        )
        return CommandHandler(configuration: configuration, environment: environment)
    }

    static func stdout(of result: String) throws -> String {
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.utf8)) as? [String: Any])
        return try #require(object["stdout"] as? String)
    }

    @Test("the prompt arrives byte for byte: non-ASCII, and larger than a pipe buffer")
    func promptIsExact() async throws {
        let handler = try Self.handler("echo-stdin.sh", limit: 4 << 20)
        let small = "héllo ✓ 日本語 \u{1F600}\n\ttabs and \"quotes\" \\ backslashes"
        #expect(try Self.stdout(of: try await handler.handle(Self.claimed(prompt: small), context: Self.context)) == small)
        let line = String(repeating: "0123456789abcdefé", count: 64) + "\n"
        let large = String(repeating: line, count: (1 << 20) / line.utf8.count + 10)
        #expect(large.utf8.count > 1 << 20)
        #expect(try Self.stdout(of: try await handler.handle(Self.claimed(prompt: large), context: Self.context)) == large)
    }

    @Test("a command that exits without reading a prompt larger than a pipe completes: the handler ignores SIGPIPE itself, whatever program runs it")
    func commandThatIgnoresItsPrompt() async throws {
        // The disposition as a program that never set it has it, only while the handler is made.
        let saved = signal(SIGPIPE, SIG_DFL)
        let handler = try Self.handler("ignores-prompt.sh")
        let during = signal(SIGPIPE, saved)
        #expect(unsafeBitCast(during, to: Int.self) == unsafeBitCast(SIG_IGN, to: Int.self), "SIGPIPE is ignored once a handler exists")
        let prompt = String(repeating: "x", count: 1 << 20)
        #expect(try Self.stdout(of: try await handler.handle(Self.claimed(prompt: prompt), context: Self.context)) == "did not read it\n")
    }

    @Test("exit 0 with JSON output: the result is that JSON, and the job's variables are set")
    func jsonResult() async throws {
        let job = Self.claimed(payload: #"{"repo":"demo"}"#, attempt: 2)
        let result = try await Self.handler("json-result.sh").handle(job, context: Self.context)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.utf8)) as? [String: Any])
        #expect(object["job"] as? String == job.job.id.uuidString.lowercased())
        #expect(object["attempt"] as? Int == 2)
        #expect((object["payload"] as? [String: String]) == ["repo": "demo"])
    }

    @Test("exit 0 with plain text: the result is {\"stdout\": ...}")
    func plainText() async throws {
        let result = try await Self.handler("plain-text.sh").handle(Self.claimed(), context: Self.context)
        #expect(try Self.stdout(of: result) == "all done, no JSON here\n")
    }

    @Test("exit 3 fails the attempt with the status and the tail of standard error")
    func exitCode() async throws {
        let error = try await #require(throws: CommandFailure.self) {
            _ = try await Self.handler("exit-3.sh").handle(Self.claimed(), context: Self.context)
        }
        guard case .exited(let code, let tail) = error else { Issue.record("unexpected \(error)"); return }
        #expect(code == 3)
        #expect(tail.contains("something went wrong"))
        #expect(error.description.contains("status 3"))
    }

    @Test("an exit status listed in JOB_PERMANENT_EXIT_CODES fails the job for good; others stay retryable")
    func permanentExitCode() async throws {
        let permanent = try await #require(throws: CommandFailure.self) {
            _ = try await Self.handler("exit-3.sh", permanent: [3, 64]).handle(Self.claimed(), context: Self.context)
        }
        #expect(permanent.isPermanent && permanent.description.contains("JOB_PERMANENT_EXIT_CODES"))
        let retryable = try await #require(throws: CommandFailure.self) {
            _ = try await Self.handler("exit-3.sh", permanent: [64]).handle(Self.claimed(), context: Self.context)
        }
        #expect(!retryable.isPermanent)
    }

    @Test("a child killed by a signal fails the attempt naming the signal")
    func signaled() async throws {
        let error = try await #require(throws: CommandFailure.self) {
            _ = try await Self.handler("kill-self.sh").handle(Self.claimed(), context: Self.context)
        }
        guard case .signaled(let signal, _) = error else { Issue.record("unexpected \(error)"); return }
        #expect(signal == SIGKILL)
    }

    static func isAlive(_ pid: pid_t) -> Bool {
        // A zombie still answers kill(0); look at its state instead.
        guard kill(pid, 0) == 0 else { return false }
        let status = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
        return !status.contains(") Z ")
    }

    static func pids(from file: String) throws -> [pid_t] {
        try String(contentsOfFile: file, encoding: .utf8).split(separator: " ").compactMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    @Test("timeout: the whole process group is stopped, a grandchild that ignores SIGTERM included")
    func timeout() async throws {
        let pidsFile = FileManager.default.temporaryDirectory.appendingPathComponent("pids-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: pidsFile) }
        var environment = ProcessInfo.processInfo.environment
        environment["PIDS_FILE"] = pidsFile
        let handler = try Self.handler("spawn-and-hang.sh", timeout: .milliseconds(700), killGrace: .milliseconds(300), passthrough: ["PIDS_FILE"], environment: environment)
        let clock = ContinuousClock()
        let start = clock.now
        let error = try await #require(throws: CommandFailure.self) { _ = try await handler.handle(Self.claimed(), context: Self.context) }
        guard case .timedOut = error else { Issue.record("unexpected \(error)"); return }
        // Both processes would sleep 300 s: well under that means the group was stopped, not
        // waited for (a generous bound, as the suite loads both cores meanwhile).
        #expect(clock.now - start < .seconds(60))
        let pids = try Self.pids(from: pidsFile)
        #expect(pids.count == 2)
        try await Task.sleep(for: .milliseconds(200))
        for pid in pids { #expect(!Self.isAlive(pid), "process \(pid) survived") }
    }

    @Test("cancellation (job cancelled, shutdown) stops the process group promptly")
    func cancellation() async throws {
        let pidsFile = FileManager.default.temporaryDirectory.appendingPathComponent("pids-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: pidsFile) }
        var environment = ProcessInfo.processInfo.environment
        environment["PIDS_FILE"] = pidsFile
        let handler = try Self.handler("spawn-and-hang.sh", killGrace: .milliseconds(300), passthrough: ["PIDS_FILE"], environment: environment)
        let task = Task { try await handler.handle(Self.claimed(), context: Self.context) }
        for _ in 0..<100 where !FileManager.default.fileExists(atPath: pidsFile) { try await Task.sleep(for: .milliseconds(20)) }
        try await Task.sleep(for: .milliseconds(50))
        let clock = ContinuousClock()
        let start = clock.now
        task.cancel()
        _ = await task.result
        // The processes would sleep 300 s (see `timeout()` for the bound).
        #expect(clock.now - start < .seconds(60))
        try await Task.sleep(for: .milliseconds(200))
        for pid in try Self.pids(from: pidsFile) { #expect(!Self.isAlive(pid), "process \(pid) survived") }
    }

    /// Runs `graceful-stop.sh` (which saves its work on SIGTERM), stopping it with `stop`;
    /// returns whether its work was saved by the time the handler returned.
    static func stoppedGracefully(timeout: Duration = .seconds(30), stop: (_ task: Task<String, any Error>, _ ready: String) async throws -> Void) async throws -> Bool {
        let marker = FileManager.default.temporaryDirectory.appendingPathComponent("saved-\(UUID().uuidString)").path
        defer {
            try? FileManager.default.removeItem(atPath: marker)
            try? FileManager.default.removeItem(atPath: marker + ".ready")
        }
        var environment = ProcessInfo.processInfo.environment
        environment["MARKER_FILE"] = marker
        let handler = try Self.handler("graceful-stop.sh", timeout: timeout, killGrace: .seconds(20), passthrough: ["MARKER_FILE"], environment: environment)
        let task = Task { try await handler.handle(Self.claimed(), context: Self.context) }
        try await stop(task, marker + ".ready")
        _ = await task.result
        return FileManager.default.fileExists(atPath: marker)
    }

    @Test("cancellation sends SIGTERM first: a command that saves its work on it gets the time to (JOB_KILL_GRACE_MS)")
    func cancellationIsGraceful() async throws {
        let saved = try await Self.stoppedGracefully { task, ready in
            // Once its SIGTERM trap is set (a loaded machine takes a while to start a shell).
            for _ in 0..<500 where !FileManager.default.fileExists(atPath: ready) { try await Task.sleep(for: .milliseconds(20)) }
            task.cancel()
        }
        #expect(saved, "the command was killed before its SIGTERM trap finished")
    }

    @Test("a timeout sends SIGTERM first: a command that saves its work on it gets the time to (JOB_KILL_GRACE_MS)")
    func timeoutIsGraceful() async throws {
        // Long enough for the shell to set its trap on a loaded machine.
        let saved = try await Self.stoppedGracefully(timeout: .seconds(3)) { _, _ in }
        #expect(saved, "the command was killed before its SIGTERM trap finished")
    }

    static func peakRSS() -> Int {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return usage.ru_maxrss * 1024
    }

    @Test("100 MB of output is drained without blocking and cut to the limit, memory stays small")
    func flood() async throws {
        let before = Self.peakRSS()
        // A pipe left unread would block the command until the timeout; a debug build reads the
        // 110 MB in 20-36 s beside the rest of the suite (a CI run passed 30 s), hence 120.
        let result = try await Self.handler("flood.sh", timeout: .seconds(120), limit: 1 << 20).handle(Self.claimed(), context: Self.context)
        let stdout = try Self.stdout(of: result)
        #expect(stdout.hasPrefix(String(repeating: "a", count: 1000)))
        #expect(stdout.contains("more bytes cut"))
        #expect(stdout.utf8.count < (1 << 20) + 200)
        #expect(Self.peakRSS() - before < 64 << 20, "peak RSS grew by \((Self.peakRSS() - before) >> 20) MiB")
    }

    @Test("the child's environment holds no secrets, does hold the passthrough names and the job's variables")
    func environment() async throws {
        let environment = ["PATH": "/usr/bin:/bin", "HOME": "/tmp", "DATABASE_URL": "postgres://u:hunter2@db/x", "SUPABASE_SERVICE_ROLE_KEY": "sk-secret", "GIT_AUTHOR_NAME": "Robot"]
        let handler = try Self.handler("env.sh", passthrough: ["GIT_AUTHOR_NAME"], environment: environment)
        let job = Self.claimed()
        let output = try Self.stdout(of: try await handler.handle(job, context: Self.context))
        #expect(!output.contains("hunter2") && !output.contains("DATABASE_URL") && !output.contains("sk-secret"))
        #expect(output.contains("GIT_AUTHOR_NAME=Robot"))
        #expect(output.contains("PATH=/usr/bin:/bin"))
        #expect(output.contains("JOB_ID=\(job.job.id.uuidString.lowercased())"))
        #expect(output.contains("SESSION_ID=\(job.job.sessionID!.uuidString.lowercased())"))
        #expect(output.contains("JOB_ATTEMPT=1") && output.contains("JOB_MAX_ATTEMPTS=3") && output.contains("JOB_PAYLOAD_FILE="))
    }

    @Test("each job gets a fresh, empty working directory, removed afterwards; kept on failure when asked")
    func workdir() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("cmd-root-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let handler = try Self.handler("workdir.sh", root: root)
        var seen: [String] = []
        for _ in 0..<2 {
            let result = try await handler.handle(Self.claimed(), context: Self.context)
            let object = try #require(try JSONSerialization.jsonObject(with: Data(result.utf8)) as? [String: Any])
            let pwd = try #require(object["pwd"] as? String)
            #expect(object["entries"] as? Int == 0)
            #expect(pwd.hasPrefix(root))
            #expect(!FileManager.default.fileExists(atPath: pwd), "removed afterwards")
            seen.append(pwd)
        }
        #expect(Set(seen).count == 2)
        let keeper = try Self.handler("exit-3.sh", keep: .onFailure, root: root)
        _ = try? await keeper.handle(Self.claimed(), context: Self.context)
        #expect((try FileManager.default.contentsOfDirectory(atPath: root)).count == 1)
    }
}

@Suite("CommandHandler with JOB_SHELL")
struct ShellCommandTests {
    @Test("JOB_SHELL=true runs the command through /bin/sh -c, so pipes and variables work")
    func shell() async throws {
        let configuration = try CommandHandlerConfiguration(
            command: #"tr a-z A-Z | sed "s/^/$JOB_QUEUE: /""#,
            useShell: true,
            workdirRoot: FileManager.default.temporaryDirectory.appendingPathComponent("shell-\(UUID().uuidString.prefix(6))").path
        )
        #expect(configuration.argv == ["/bin/sh", "-c", #"tr a-z A-Z | sed "s/^/$JOB_QUEUE: /""#])
        let result = try await CommandHandler(configuration: configuration).handle(CommandHandlerTests.claimed(prompt: "quiet please"), context: CommandHandlerTests.context)
        #expect(try CommandHandlerTests.stdout(of: result) == "default: QUIET PLEASE")
    }

    @Test("without JOB_SHELL the words are split as a shell would, and nothing is interpreted")
    func direct() throws {
        let configuration = try CommandHandlerConfiguration(command: #"agent --prompt-file "my file" '$HOME' a|b"#)
        #expect(configuration.argv == ["agent", "--prompt-file", "my file", "$HOME", "a|b"])
    }
}
