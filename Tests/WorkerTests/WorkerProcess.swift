import Foundation
import WorkerTestSupport
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A real `worker` process (the built binary) in a temporary folder, with its output captured to files.
final class WorkerProcess: @unchecked Sendable {
    // @unchecked: `Process` is not Sendable; each instance is used by one test at a time.
    let process = Process()
    let directory: URL
    let stdoutURL: URL
    let stderrURL: URL

    /// The `worker` binary next to the test bundle.
    static let binary: URL = {
        let candidates = [
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("worker"),
            Bundle.main.bundleURL.appendingPathComponent("worker"),
            URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent(".build/debug/worker"),
        ]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.path) } ?? candidates[0]
    }()

    /// A small, clean environment: nothing of the developer's (no DATABASE_URL, no .env values).
    /// Commands run unconfined unless a test asks for the sandbox: the fixtures write logs
    /// outside their workspace (the sandbox's own tests set JOB_SANDBOX).
    static func environment(_ extra: [String: String]) -> [String: String] {
        var environment = [
            "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": NSTemporaryDirectory(), "LANG": "C.UTF-8", "NO_COLOR": "1", "JOB_SANDBOX": "none",
        ]
        environment.merge(extra) { $1 }
        return environment
    }

    /// Starts `executable` (the `worker` binary unless said otherwise) with `arguments`.
    init(_ arguments: [String] = ["run"], environment: [String: String], directory: URL, stdin: Data? = nil, executable: URL = WorkerProcess.binary) throws {
        self.directory = directory
        let id = UUID().uuidString.prefix(8)
        stdoutURL = directory.appendingPathComponent("stdout-\(id).log")
        stderrURL = directory.appendingPathComponent("stderr-\(id).log")
        _ = FileManager.default.createFile(atPath: stdoutURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: stderrURL.path, contents: nil)
        process.executableURL = executable
        process.arguments = arguments
        process.environment = Self.environment(environment)
        process.currentDirectoryURL = directory
        process.standardOutput = try FileHandle(forWritingTo: stdoutURL)
        process.standardError = try FileHandle(forWritingTo: stderrURL)
        if let stdin {
            let pipe = Pipe()
            process.standardInput = pipe
            try process.run()
            // The throwing write: the old one crashes the test process (a `try!` inside
            // Foundation) when the child exits before reading everything, as `enqueue` does at a
            // bad line. Its exit status then tells the test what happened.
            try? pipe.fileHandleForWriting.write(contentsOf: stdin)
            try? pipe.fileHandleForWriting.close()
        } else {
            process.standardInput = FileHandle.nullDevice
            try process.run()
        }
    }

    var stdout: String { (try? String(contentsOf: stdoutURL, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOf: stderrURL, encoding: .utf8)) ?? "" }
    var pid: Int32 { process.processIdentifier }

    func send(_ signal: Int32) {
        kill(process.processIdentifier, signal)
    }

    /// The exit status, or `nil` if still running after `timeout` (the process is then killed).
    func waitForExit(timeout: Duration) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            if ContinuousClock.now > deadline {
                kill(process.processIdentifier, SIGKILL)
                Self.reap(process.processIdentifier)
                return nil
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return process.terminationStatus
    }

    /// Kills the process if it still runs (cleanup after a failed test).
    func kill9() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            Self.reap(process.processIdentifier)
        }
    }

    /// Waits (at most 5 s) until the killed process `pid` is gone, reaping it if nobody did.
    ///
    /// Not `Process.waitUntilExit()`: it spins the calling thread's run loop until Foundation
    /// learns of the exit, and in a test process that also starts children with
    /// swift-subprocess that can be never (a run hung there with the child a zombie), on a
    /// thread of the two-thread cooperative pool.
    static func reap(_ pid: pid_t) {
        var status: Int32 = 0
        for _ in 0..<500 {
            let reaped = waitpid(pid, &status, WNOHANG)
            if reaped == pid || (reaped == -1 && errno == ECHILD) { return }
            usleep(10_000)
        }
    }

    /// Runs a CLI command to completion.
    static func command(
        _ arguments: [String], environment: [String: String], directory: URL, stdin: Data? = nil, executable: URL = WorkerProcess.binary
    ) async throws -> (status: Int32, stdout: String, stderr: String) {
        let worker = try WorkerProcess(arguments, environment: environment, directory: directory, stdin: stdin, executable: executable)
        let status = await worker.waitForExit(timeout: .seconds(60)) ?? -1
        return (status, worker.stdout, worker.stderr)
    }
}

/// A temporary folder removed when the test ends.
struct TemporaryDirectory: ~Copyable {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("worker-e2e-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit {
        try? FileManager.default.removeItem(at: url)
    }
}

extension TemporaryDirectory {
    /// An executable script `name` in this folder holding `text`.
    func script(_ name: String, _ text: String) throws -> URL {
        let script = url.appendingPathComponent(name)
        try text.write(to: script, atomically: true, encoding: .utf8)
        chmod(script.path, 0o755)
        return script
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
func freePort() throws -> Int {
    try freeLocalPort()
}

/// `GET` (or another method) on the worker's health server.
func http(_ method: String = "GET", port: Int, path: String, headers: [String: String] = [:]) async throws -> (status: Int, body: String) {
    var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
    request.httpMethod = method
    for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
    request.timeoutInterval = 5
    let (data, response) = try await URLSession.shared.data(for: request)
    return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
}

/// Polls until `condition` holds; records an issue naming `what` on timeout.
func eventually(_ what: String, timeout: Duration = .seconds(20), _ condition: () async throws -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if (try? await condition()) == true { return true }
        try await Task.sleep(for: .milliseconds(50))
    }
    return false
}

func jsonObject(_ text: String) -> [String: Any]? {
    try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
}
