import Foundation
import Testing
import WorkerCore
import WorkerExecution

extension ChaosTests.Sandbox {
    @Test("a sandbox that cannot start a command (a mount's source gone) is this worker's fault: the job goes back with no attempt used, its events with no `started`, and the worker says why it is not ready; a command that fails as bwrap would is the job's failure, its lines after `started`")
    func sandboxStartFailureIsTheWorkersFault() async throws {
        #expect(JobSandbox.locate() != nil, "bwrap is installed (scripts/test installs Debian's bubblewrap)")
        let mounted = FileManager.default.temporaryDirectory.appendingPathComponent("worker-sandbox-ro-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: mounted, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: mounted) }
        let worker = try SandboxedWorker(["JOB_SANDBOX": "bubblewrap", "JOB_SANDBOX_RO_PATHS": mounted.path])
        defer { worker.process.kill9() }
        #expect(try await eventually("health") { try await http(port: worker.port, path: "/health").status == 200 })

        // Its message and worker-launch's start line, from the command itself: the job's failure.
        let forged = try await worker.run("fail bwrap: Can't find source path /x: No such file or directory")
        #expect(forged["status"] as? String == "failed" && forged["attempts"] as? Int == 1, "\(forged)")
        // `started` once the sandbox started the command, before anything the command said; a
        // `stdin` run's output after it too (standard output waits for the start line).
        func kinds(_ id: String) async throws -> [String] {
            try await WorkerProcess.command(["jobs", "logs", id, "--json"], environment: worker.environment, directory: worker.folder)
                .stdout.split(separator: "\n").compactMap { jsonObject(String($0)) }
                .map { WorkerEventsRunTests.status(of: $0) ?? ($0["kind"] as? String ?? "?") }
        }
        let forgedKinds = try await kinds(forged["id"] as? String ?? "")
        #expect(Array(forgedKinds.prefix(3)) == ["claimed", "started", "log"] && forgedKinds.last == "failed", "\(forgedKinds)")
        let hashed = try await worker.run("stdin")
        let hashedKinds = try await kinds(hashed["id"] as? String ?? "")
        #expect(hashedKinds == ["claimed", "started", "message", "completed"], "\(hashedKinds)")

        // bwrap cannot mount what is gone: every start fails before the command. (The CLI checks
        // the path exists: it is left out of its environment.)
        try FileManager.default.removeItem(at: mounted)
        var cli = worker.environment
        cli["JOB_SANDBOX_RO_PATHS"] = nil
        var ids: [String] = []
        for _ in 0..<JobProcessor.workerFaultsMakingUnready {
            ids.append(try await WorkerProcess.command(["enqueue", "--prompt", "stdin"], environment: cli, directory: worker.folder)
                .stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        var body = ""
        #expect(try await eventually("the worker not ready, saying why", timeout: .seconds(30)) {
            let ready = try await http(port: worker.port, path: "/ready")
            body = ready.body
            return ready.status == 503 && body.contains("could not be run on this worker") && body.contains("Not claiming for a while")
        }, "\(body)")
        // Why, in the log; not in the probe's answer, which anyone reaching the port reads (the
        // error names this machine's paths).
        #expect(!body.contains("Can't find source path"), "\(body)")
        #expect(try await eventually("the log says why") { worker.process.stdout.contains("Can't find source path") })
        // And counted, for an alert (before: no metric said so).
        let metrics = try await http(port: worker.port, path: "/metrics").body
        let faults = metrics.split(separator: "\n").first { $0.hasPrefix(#"worker_jobs_given_back_total{queue="default",reason="worker_fault"}"#) }
        #expect(faults.flatMap { Double($0.split(separator: " ").last ?? "") }.map { $0 >= Double(JobProcessor.workerFaultsMakingUnready) } == true, "\(faults ?? "none")")
        // (The three faults may come from two of the jobs, one claimed twice: the third then
        // waits, never claimed, for the pause to end.)
        var faulted = 0
        for id in ids {
            var job: [String: Any] = [:]
            #expect(try await eventually("job \(id) back in the queue") {
                job = jsonObject(try await WorkerProcess.command(["jobs", "show", id, "--json"], environment: cli, directory: worker.folder).stdout) ?? [:]
                return job["status"] as? String == "pending"
            }, "\(job)")
            #expect(job["attempts"] as? Int == 0, "no attempt used: \(job)")
            let events = try await WorkerProcess.command(["jobs", "logs", id, "--json"], environment: cli, directory: worker.folder).stdout
            if events.contains("claimed") {
                #expect(events.contains("worker_fault") && events.contains("failed before the command started"), "\(events)")
                #expect(!events.contains(#""started""#), "the command never started: \(events)")
                faulted += 1
            }
        }
        #expect(faulted >= 2, "the faults are the jobs'")
    }

    @Test("a turn that makes its session workspace unreadable (chmod 000 /workspace) does not stop the session's next turn from starting (as JOB_USER, bwrap could not enter it: a worker fault on every turn after)")
    func unreadableWorkspaceNextTurnStarts() async throws {
        let worker = try SandboxedWorker(["JOB_SANDBOX": "bubblewrap", "JOB_USER": "nobody", "JOB_WORKSPACE": "session"])
        defer { worker.process.kill9() }
        #expect(try await eventually("health") { try await http(port: worker.port, path: "/health").status == 200 })
        let session = UUID()
        _ = try await worker.run("hide .", session: session)
        let next = try await worker.run("stdin", session: session, timeout: .seconds(20))
        #expect(next["status"] as? String == "completed" && next["attempts"] as? Int == 1, "\(next)")
    }
}
