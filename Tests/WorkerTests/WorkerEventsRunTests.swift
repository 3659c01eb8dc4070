import Foundation
import Testing

/// Live job events with real `worker run` processes on SQLite: what a command prints becomes the
/// job's event stream, read back with `worker jobs logs` (issue 15).
@Suite("worker run: job events", .serialized)
struct WorkerEventsRunTests {
    static let agents = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/agents")

    /// A worker on a SQLite file of its own, with `extra` settings.
    static func start(_ folder: URL, _ extra: [String: String] = [:]) throws -> (WorkerProcess, [String: String], Int) {
        let port = try freePort()
        var environment = [
            "HEALTH_CHECK_PORT": "\(port)", "LOG_FORMAT": "json", "POLL_INTERVAL_MS": "200",
            "JOB_WORKDIR_ROOT": folder.appendingPathComponent("jobs").path,
        ]
        environment.merge(extra) { $1 }
        return (try WorkerProcess(environment: environment, directory: folder), environment, port)
    }

    static func enqueue(_ arguments: [String], _ environment: [String: String], _ folder: URL) async throws -> String {
        let result = try await WorkerProcess.command(["enqueue"] + arguments, environment: environment, directory: folder)
        try #require(result.status == 0, "\(result.stderr)")
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The job's status, from the worker's job API (`GET /jobs/ID`; loopback needs no token).
    /// Not from the SQLite file in this process: a store opened here beside the worker's writes
    /// waited for their lock on the thread pool that every in-process SQLite test shares, and
    /// starved them.
    static func status(_ id: String, port: Int) async throws -> String? {
        jsonObject(try await http(port: port, path: "/jobs/\(id)").body)?["status"] as? String
    }

    static func waitForStatus(_ id: String, _ status: String, port: Int, timeout: Duration = .seconds(20)) async throws -> Bool {
        try await eventually("job \(status)", timeout: timeout) { try await Self.status(id, port: port) == status }
    }

    /// Writes an executable script into `folder`.
    static func script(_ name: String, in folder: URL, _ text: String) throws -> String {
        let script = folder.appendingPathComponent(name)
        try text.write(to: script, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: script.path)
        return script.path
    }

    /// `worker jobs logs ID --json` (and `arguments`), one object a line.
    static func events(_ id: String, _ environment: [String: String], _ folder: URL, _ arguments: [String] = []) async throws -> [[String: Any]] {
        let result = try await WorkerProcess.command(["jobs", "logs", id, "--json"] + arguments, environment: environment, directory: folder)
        try #require(result.status == 0, "\(result.stderr)")
        return result.stdout.split(separator: "\n").compactMap { jsonObject(String($0)) }
    }

    static func status(of event: [String: Any]) -> String? {
        event["kind"] as? String == "status" ? (event["data"] as? [String: Any])?["status"] as? String : nil
    }

    /// Runs the recorded agent session `fixture` as a job and returns its events and its job.
    static func replay(_ fixture: String) async throws -> (events: [[String: Any]], job: [String: Any], metrics: String) {
        let folder = try TemporaryDirectory()
        let (worker, environment, port) = try Self.start(folder.url, ["JOB_COMMAND": agents.appendingPathComponent("replay.sh").path])
        defer { worker.kill9() }
        #expect(try await eventually("ready") { try await http(port: port, path: "/ready").status == 200 })
        let id = try await enqueue(["--prompt", "add dark mode", "--payload", #"{"fixture":"\#(fixture)"}"#], environment, folder.url)
        #expect(try await waitForStatus(id, "completed", port: port))
        let events = try await events(id, environment, folder.url)
        let job = jsonObject(try await WorkerProcess.command(["jobs", "show", id, "--json"], environment: environment, directory: folder.url).stdout) ?? [:]
        let metrics = try await http(port: port, path: "/metrics").body
        worker.send(SIGTERM)
        #expect(await worker.waitForExit(timeout: .seconds(10)) == 0)
        return (events, job, metrics)
    }

    /// Checks what every event stream must be: numbered 1, 2, 3, ... with no gap, one attempt,
    /// framed by the worker's claimed/started and completed status events; stdout lines in order.
    static func checkFrame(_ events: [[String: Any]], fixtureLines: [String]) throws {
        #expect(events.compactMap { $0["seq"] as? Int } == Array(1..<events.count + 1))
        #expect(events.allSatisfy { $0["attempt"] as? Int == 1 })
        #expect(events.prefix(2).compactMap(status(of:)) == ["claimed", "started"])
        #expect(events.last.flatMap(status(of:)) == "completed")
        let messages = events.filter { $0["kind"] as? String == "message" }.compactMap { $0["data"] as? NSDictionary }
        let expected = fixtureLines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? NSDictionary }
        #expect(messages == expected, "every JSON line a message, as printed, in order")
        let outputs = events.filter { $0["kind"] as? String == "output" }.compactMap { ($0["data"] as? [String: Any])?["text"] as? String }
        #expect(outputs.first?.hasPrefix("replaying") == true)
        let logs = events.filter { $0["kind"] as? String == "log" }.compactMap { ($0["data"] as? [String: Any])?["text"] as? String }
        #expect(logs == ["agent warming up"])
    }

    static func lines(_ fixture: String) throws -> [String] {
        try String(contentsOf: agents.appendingPathComponent(fixture), encoding: .utf8).split(separator: "\n").map(String.init)
    }

    @Test("a recorded Claude Code stream-json session: each line an event in order, the final result message the job's result, its usage and cost on the job")
    func claudeCodeStream() async throws {
        let (events, job, metrics) = try await Self.replay("claude-stream.jsonl")
        let lines = try Self.lines("claude-stream.jsonl")
        try Self.checkFrame(events, fixtureLines: lines)
        let result = try #require(job["result"] as? [String: Any])
        #expect(result["type"] as? String == "result")
        #expect(result["total_cost_usd"] as? Double == 0.0318945)
        // The result message's usage: input 16 + cache creation 5,713 + cache reads 43,843.
        #expect(job["input_tokens"] as? Int == 49_572)
        #expect(job["output_tokens"] as? Int == 270)
        #expect(job["cost_usd"] as? Double == 0.0318945)
        #expect(metrics.contains(#"worker_job_tokens_total{kind="input"} 49572"#), "\(metrics)")
        #expect(metrics.contains(#"worker_job_tokens_total{kind="output"} 270"#))
        #expect(metrics.contains("worker_job_cost_usd_total 0.0318945"))
    }

    @Test("a final result message longer than an event (a long answer) is still the job's result, with its tokens and cost; its event is cut")
    func longResultMessage() async throws {
        let folder = try TemporaryDirectory()
        let script = try Self.script("long-result.sh", in: folder.url, """
            #!/bin/sh
            cat > /dev/null
            answer=$(head -c 70000 /dev/zero | tr '\\0' 'a')
            printf '{"type":"result","result":"%s","total_cost_usd":1.25,"usage":{"input_tokens":10,"output_tokens":20}}\\n' "$answer"
            """)
        let (worker, environment, port) = try Self.start(folder.url, ["JOB_COMMAND": script])
        defer { worker.kill9() }
        #expect(try await eventually("ready") { try await http(port: port, path: "/ready").status == 200 })
        let id = try await Self.enqueue(["--prompt", "write a long answer"], environment, folder.url)
        #expect(try await Self.waitForStatus(id, "completed", port: port))
        let job = jsonObject(try await WorkerProcess.command(["jobs", "show", id, "--json"], environment: environment, directory: folder.url).stdout) ?? [:]
        // Before: the line was cut at the event's 64 KiB, so no JSON: the result was the raw
        // output and the tokens and cost were 0.
        let result = try #require(job["result"] as? [String: Any], "\(job.keys)")
        #expect(result["type"] as? String == "result" && (result["result"] as? String)?.count == 70_000)
        #expect(job["input_tokens"] as? Int == 10 && job["output_tokens"] as? Int == 20 && job["cost_usd"] as? Double == 1.25, "\(job)")
        let events = try await Self.events(id, environment, folder.url)
        let cut = events.compactMap { ($0["data"] as? [String: Any])?["text"] as? String }.first { $0.hasPrefix(#"{"type":"result""#) }
        #expect(cut?.contains("[cut: ") == true && (cut?.utf8.count ?? .max) <= 65_536)
        worker.send(SIGTERM)
        #expect(await worker.waitForExit(timeout: .seconds(10)) == 0)
    }

    @Test("a recorded Codex exec --json session: each line an event in order, the last line the job's result, its usage on the job")
    func codexJSONL() async throws {
        let (events, job, metrics) = try await Self.replay("codex.jsonl")
        try Self.checkFrame(events, fixtureLines: try Self.lines("codex.jsonl"))
        let result = try #require(job["result"] as? [String: Any])
        #expect(result["type"] as? String == "turn.completed")
        // turn.completed's usage (its input tokens include the cached ones); Codex reports no cost.
        #expect(job["input_tokens"] as? Int == 24_763)
        #expect(job["output_tokens"] as? Int == 122)
        #expect(job["cost_usd"] as? Double == 0)
        #expect(metrics.contains(#"worker_job_tokens_total{kind="input"} 24763"#), "\(metrics)")
    }

    @Test("jobs logs --follow prints events as they come and exits 0 when the job completes, 1 when it fails; --after resumes with no gap")
    func follow() async throws {
        let folder = try TemporaryDirectory()
        let (worker, environment, port) = try Self.start(folder.url)
        defer { worker.kill9() }
        #expect(try await eventually("ready") { try await http(port: port, path: "/ready").status == 200 })
        // The echo handler: one output event per half second of sleepMs.
        let id = try await Self.enqueue(["--prompt", "slow", "--payload", #"{"sleepMs":5000}"#], environment, folder.url)
        let follower = try WorkerProcess(["jobs", "logs", id, "--follow", "--json"], environment: environment, directory: folder.url)
        defer { follower.kill9() }
        // Live: the first output is printed while the job still runs.
        #expect(try await eventually("first output while running", timeout: .seconds(10)) { follower.stdout.contains(#""kind":"output""#) })
        #expect(try await Self.status(id, port: port) == "processing")
        #expect(await follower.waitForExit(timeout: .seconds(20)) == 0)
        let followed = follower.stdout.split(separator: "\n").compactMap { jsonObject(String($0)) }
        #expect(followed.compactMap { $0["seq"] as? Int } == Array(1..<followed.count + 1))
        // The echo handler has no process to start: claimed, its output, completed.
        #expect(followed.compactMap(Self.status(of:)) == ["claimed", "completed"])
        #expect(followed.filter { $0["kind"] as? String == "output" }.count == 10)

        // Resume: a reader that saw up to 3 gets the rest, exactly.
        let rest = try await Self.events(id, environment, folder.url, ["--after", "3"])
        #expect(rest.compactMap { $0["seq"] as? Int } == Array(4...followed.count))

        let failing = try await Self.enqueue(["--prompt", "no", "--max-attempts", "1", "--payload", #"{"failTimes":1}"#], environment, folder.url)
        let result = try await WorkerProcess.command(["jobs", "logs", failing, "--follow"], environment: environment, directory: folder.url)
        #expect(result.status == 1)
        #expect(result.stdout.contains("failed"), "\(result.stdout)")
        #expect(result.stdout.contains("simulated failure"), "the text form shows the error")
        worker.send(SIGTERM)
        #expect(await worker.waitForExit(timeout: .seconds(10)) == 0)
    }

    @Test("bounds: long lines cut with a marker, events past JOB_EVENTS_LIMIT only counted, invalid UTF-8 and NUL bytes stored replaced")
    func bounds() async throws {
        let folder = try TemporaryDirectory()
        let script = try Self.script("noisy.sh", in: folder.url, """
            #!/bin/bash
            cat > /dev/null
            printf 'bad \\xff\\xfe bytes and a \\000 NUL\\n'
            head -c 1000 /dev/zero | tr '\\0' 'x'; echo
            for i in $(seq 1 20); do echo "line $i"; done
            echo '{"type":"result","result":"done"}'
            """)
        let (worker, environment, port) = try Self.start(folder.url, [
            "JOB_COMMAND": script, "JOB_EVENT_MAX_BYTES": "300", "JOB_EVENTS_LIMIT": "5",
        ])
        defer { worker.kill9() }
        #expect(try await eventually("ready") { try await http(port: port, path: "/ready").status == 200 })
        let id = try await Self.enqueue(["--prompt", "p"], environment, folder.url)
        #expect(try await Self.waitForStatus(id, "completed", port: port))
        let events = try await Self.events(id, environment, folder.url)
        #expect(events.compactMap { $0["seq"] as? Int } == Array(1..<events.count + 1))
        let kinds = events.compactMap { $0["kind"] as? String }
        // claimed, started, 5 lines, truncated, completed.
        #expect(kinds == ["status", "status", "output", "output", "output", "output", "output", "truncated", "status"], "\(kinds)")
        let texts = events.compactMap { ($0["data"] as? [String: Any])?["text"] as? String }
        #expect(texts.first == "bad \u{FFFD}\u{FFFD} bytes and a \u{FFFD} NUL")
        let long = try #require(texts.dropFirst().first)
        #expect(long.hasPrefix(String(repeating: "x", count: 200)))
        #expect(long.hasSuffix("more bytes]"), "\(long)")
        #expect(long.utf8.count < 300)
        let end = try #require(events.last?["data"] as? [String: Any])
        #expect(end["droppedEvents"] as? Int == 23 - 5 - 1 + 1, "lines past the limit are counted")
        // The last line is still the result, though its event was dropped.
        let job = jsonObject(try await WorkerProcess.command(["jobs", "show", id, "--json"], environment: environment, directory: folder.url).stdout)
        #expect((job?["result"] as? [String: Any])?["result"] as? String == "done")
        let metrics = try await http(port: port, path: "/metrics").body
        #expect(metrics.contains("worker_job_events_dropped_total"))
        #expect(metrics.contains("worker_job_event_replacements_total"))
        worker.send(SIGTERM)
        #expect(await worker.waitForExit(timeout: .seconds(10)) == 0)
    }

    @Test("kill -9 mid-job: the retry's events continue the job's sequence, with no gap and no duplicate")
    func killedWorkerSequence() async throws {
        let folder = try TemporaryDirectory()
        let script = try Self.script("slow.sh", in: folder.url, """
            #!/bin/bash
            cat > /dev/null
            for i in $(seq 1 12); do echo "attempt $JOB_ATTEMPT step $i"; sleep 0.5; done
            """)
        let settings = ["JOB_COMMAND": script, "LEASE_DURATION_MS": "1500", "JOB_ENV_PASSTHROUGH": "JOB_ATTEMPT"]
        let (first, environment, port) = try Self.start(folder.url, settings)
        defer { first.kill9() }
        #expect(try await eventually("ready") { try await http(port: port, path: "/ready").status == 200 })
        let id = try await Self.enqueue(["--prompt", "p"], environment, folder.url)
        // Followed over the event stream until two lines are in (claimed, started, 2 lines).
        let seen = try await WorkerEventsRunTests.JobAPI.follow(port: port, job: id, token: "", limit: 4, directory: folder.url)
        #expect(seen.events.count == 4)
        #expect(try await Self.status(id, port: port) == "processing", "killed mid-job")
        first.kill9()
        let (second, _, secondPort) = try Self.start(folder.url, settings)
        defer { second.kill9() }
        #expect(try await eventually("ready") { try await http(port: secondPort, path: "/ready").status == 200 })
        #expect(try await Self.waitForStatus(id, "completed", port: secondPort, timeout: .seconds(40)))
        let events = try await Self.events(id, environment, folder.url)
        #expect(events.compactMap { $0["seq"] as? Int } == Array(1..<events.count + 1))
        let attempts = events.compactMap { $0["attempt"] as? Int }
        #expect(attempts.first == 1 && attempts.last == 2)
        #expect(attempts == attempts.sorted(), "the second attempt's events all come after the first's")
        #expect(events.filter { $0["attempt"] as? Int == 2 }.compactMap(Self.status(of:)) == ["claimed", "started", "completed"])
        second.send(SIGTERM)
        #expect(await second.waitForExit(timeout: .seconds(10)) == 0)
    }

    /// Peak resident memory of a process, from /proc (kB).
    static func peakRSSKilobytes(_ pid: Int32) -> Int? {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }) else { return nil }
        return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
    }

    @Test("200,000 lines printed as fast as possible: every one stored in order, the worker's memory bounded, a job beside it runs")
    func flood() async throws {
        let folder = try TemporaryDirectory()
        // The flood stops halfway until the small job has run: the small job runs while the
        // flood is written, or the flood never ends. (Enqueued after a fixed wait, the small job
        // could run after a fast flood ended and prove nothing.)
        let marks = folder.url.path
        let script = try Self.script("flood.sh", in: folder.url, """
            #!/bin/bash
            read -r prompt
            if [ "$prompt" = flood ]; then
                seq 1 100000
                touch '\(marks)/half'
                for _ in $(seq 600); do [ -e '\(marks)/small' ] && break; sleep 0.1; done
                seq 100001 200000
            else
                touch '\(marks)/small'
                echo '{"done":true}'
            fi
            """)
        let (worker, environment, port) = try Self.start(folder.url, [
            "JOB_COMMAND": script, "JOB_EVENTS_LIMIT": "250000", "MAX_CONCURRENT_JOBS": "2",
        ])
        defer { worker.kill9() }
        #expect(try await eventually("ready") { try await http(port: port, path: "/ready").status == 200 })
        let flood = try await Self.enqueue(["--prompt", "flood"], environment, folder.url)
        // Another job while the flood is written: it is not held up behind it.
        #expect(try await eventually("half the flood printed", timeout: .seconds(30)) {
            FileManager.default.fileExists(atPath: folder.url.appendingPathComponent("half").path)
        })
        let other = try await Self.enqueue(["--prompt", "small"], environment, folder.url)
        #expect(try await Self.waitForStatus(other, "completed", port: port, timeout: .seconds(30)))
        #expect(try await Self.status(flood, port: port) == "processing", "the small job ended while the flood was still written")
        #expect(try await Self.waitForStatus(flood, "completed", port: port, timeout: .seconds(120)))
        // The end of the stream: line k is event k + 2 (after claimed and started), the last
        // line 200,000, then the ending event, numbered 200,003; sequence numbers have no gap (the
        // primary key and the numbering), so the count and the ends tell that every line is there.
        let tail = try await Self.events(flood, environment, folder.url, ["--after", "199995"])
        #expect(tail.compactMap { $0["seq"] as? Int } == Array(199_996...200_003))
        let texts = tail.compactMap { ($0["data"] as? [String: Any])?["text"] as? String }
        #expect(texts == (199_994...200_000).map(String.init))
        #expect(tail.last.flatMap(Self.status(of:)) == "completed")
        #expect((tail.last?["data"] as? [String: Any])?["droppedEvents"] as? Int == 0)
        let head = try await Self.events(flood, environment, folder.url, ["--after", "2", "--limit", "3"])
        #expect(head.count == 3)
        #expect(head.prefix(3).compactMap { ($0["data"] as? [String: Any])?["text"] as? String } == ["1", "2", "3"])
        // The worker buffers at most 16 MiB of events; its peak memory stays far from 200,000 lines' worth of objects.
        let peak = try #require(Self.peakRSSKilobytes(worker.pid))
        #expect(peak < 200 * 1024, "peak RSS \(peak / 1024) MiB")
        worker.send(SIGTERM)
        #expect(await worker.waitForExit(timeout: .seconds(10)) == 0)
    }
}
