import Foundation
import Testing

/// The edges of a job's event stream: lines at the byte cap, data with raw line breaks, a stream
/// that has nothing more to send, a job deleted under a stream, `--follow`'s exit codes.
extension WorkerEventsRunTests {
    /// `curl` of the job API (loopback, no token): the status code and the body.
    static func curl(_ path: String, port: Int, maxTime: Int = 15) async throws -> (status: Int, body: String, exit: Int32) {
        let folder = try TemporaryDirectory()
        let result = try await WorkerProcess.command(
            ["-sS", "--max-time", "\(maxTime)", "-o", "-", "-w", "\n%{http_code}", "http://127.0.0.1:\(port)\(path)"], environment: [:],
            directory: folder.url, executable: URL(fileURLWithPath: "/usr/bin/curl"))
        var lines = result.stdout.components(separatedBy: "\n")
        let status = Int(lines.popLast() ?? "") ?? 0
        return (status, lines.joined(separator: "\n"), result.status)
    }

    @Test("at the byte cap: a CRLF line that fits but for its CR stays whole, a character cut in two is counted as the bytes lost; a message with raw line breaks keeps SSE and JSONL lines whole; a finished stream's reconnect gets 204")
    func capEdges() async throws {
        let folder = try TemporaryDirectory()
        // A JSON object of exactly 300 bytes (the cap), printed with CRLF.
        let pad = String(repeating: "a", count: 300 - #"{"type":"pad","text":""}"#.utf8.count)
        let script = try Self.script("edges.sh", in: folder.url, """
            #!/bin/bash
            cat > /dev/null
            printf '{"type":"pad","text":"\(pad)"}\\r\\n'
            printf 'a'; for i in $(seq 1 200); do printf '\\xc3\\xa9'; done; echo
            printf '{"type":"split",\\r"b":2}\\n'
            """)
        let (worker, environment, port) = try Self.start(folder.url, ["JOB_COMMAND": script, "JOB_EVENT_MAX_BYTES": "300"])
        defer { worker.kill9() }
        #expect(try await eventually("ready") { try await http(port: port, path: "/ready").status == 200 })
        let id = try await Self.enqueue(["--prompt", "p"], environment, folder.url)
        #expect(try await Self.waitForStatus(id, "completed", port: port))
        let events = try await Self.events(id, environment, folder.url)
        let printed = events.filter { $0["kind"] as? String != "status" }
        try #require(printed.count == 3, "\(printed)")
        #expect(printed[0]["kind"] as? String == "message", "the CRLF line of 300 bytes is whole: \(printed[0])")
        let cut = try #require((printed[1]["data"] as? [String: Any])?["text"] as? String)
        let marker = try #require(cut.range(of: #" \[cut: (\d+) more bytes\]$"#, options: .regularExpression))
        let lost = Int(cut[marker].filter(\.isNumber)) ?? -1
        let kept = cut[..<marker.lowerBound]
        #expect(!kept.contains("\u{FFFD}"), "no half character kept")
        #expect(kept.utf8.count + lost == 401, "kept \(kept.utf8.count) + cut \(lost) bytes = the 401 printed")
        #expect(printed[2]["kind"] as? String == "message")
        #expect((printed[2]["data"] as? [String: Any])?["b"] as? Int == 2, "the JSONL line of a message with a raw CR is one line")

        let stream = try await Self.curl("/jobs/\(id)/events", port: port)
        #expect(stream.status == 200 && stream.exit == 0)
        #expect(!stream.body.contains("\r"), "no raw CR cuts an SSE data field")
        #expect(stream.body.components(separatedBy: "\n\n").contains { $0.contains("event: message") && $0.contains(#""b":2"#) })
        let last = try #require(events.last?["seq"] as? Int)
        let again = try await Self.curl("/jobs/\(id)/events?after=\(last)", port: port)
        #expect(again.status == 204, "nothing more will come: EventSource stops reconnecting")
        worker.send(SIGTERM)
        #expect(await worker.waitForExit(timeout: .seconds(10)) == 0)
    }

    @Test("JOB_EVENTS_LIMIT=0: status events only, no truncated event; the text view names a truncated event in full")
    func statusEventsOnly() async throws {
        let folder = try TemporaryDirectory()
        let script = try Self.script("chatty.sh", in: folder.url, "#!/bin/bash\ncat > /dev/null\nfor i in 1 2 3; do echo \"line $i\"; done\n")
        let (worker, environment, port) = try Self.start(folder.url, ["JOB_COMMAND": script, "JOB_EVENTS_LIMIT": "0"])
        defer { worker.kill9() }
        #expect(try await eventually("ready") { try await http(port: port, path: "/ready").status == 200 })
        let id = try await Self.enqueue(["--prompt", "p"], environment, folder.url)
        #expect(try await Self.waitForStatus(id, "completed", port: port))
        let events = try await Self.events(id, environment, folder.url)
        #expect(events.compactMap { $0["kind"] as? String } == ["status", "status", "status"], "\(events)")
        #expect((events.last?["data"] as? [String: Any])?["droppedEvents"] as? Int == 3)
        worker.send(SIGTERM)
        #expect(await worker.waitForExit(timeout: .seconds(10)) == 0)

        let limited = try TemporaryDirectory()
        let (second, secondEnvironment, secondPort) = try Self.start(limited.url, ["JOB_COMMAND": script, "JOB_EVENTS_LIMIT": "1"])
        defer { second.kill9() }
        #expect(try await eventually("ready") { try await http(port: secondPort, path: "/ready").status == 200 })
        let other = try await Self.enqueue(["--prompt", "p"], secondEnvironment, limited.url)
        #expect(try await Self.waitForStatus(other, "completed", port: secondPort))
        let text = try await WorkerProcess.command(["jobs", "logs", other], environment: secondEnvironment, directory: limited.url).stdout
        #expect(text.contains(" truncated "), "\(text)")
        second.send(SIGTERM)
        #expect(await second.waitForExit(timeout: .seconds(10)) == 0)
    }

    @Test("a job deleted while its stream is open ends the stream; jobs logs --follow exits 2 on an error, not the 1 of a failed job")
    func deletedJobEndsStream() async throws {
        let folder = try TemporaryDirectory()
        let (worker, environment, port) = try Self.start(folder.url, ["JOB_HANDLER": "echo"])
        defer { worker.kill9() }
        #expect(try await eventually("ready") { try await http(port: port, path: "/ready").status == 200 })
        let id = try await Self.enqueue(["--prompt", "later", "--run-at", "2099-01-01T00:00:00Z"], environment, folder.url)
        async let stream = Self.curl("/jobs/\(id)/events", port: port, maxTime: 20)
        try await Task.sleep(for: .seconds(1))
        let database = folder.url.appendingPathComponent("worker.sqlite").path
        let delete = try await WorkerProcess.command(
            ["-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], timeout=10); c.execute(\"DELETE FROM coding_jobs WHERE id = '\(id)'\"); c.commit()", database],
            environment: [:], directory: folder.url, executable: URL(fileURLWithPath: "/usr/bin/python3"))
        #expect(delete.status == 0, "\(delete.stderr)")
        let clock = ContinuousClock(), start = clock.now
        let ended = try await stream
        #expect(ended.exit == 0, "the stream ended by itself (curl exit 28 is its 20 s limit)")
        #expect(clock.now - start < .seconds(10))

        let follow = try await WorkerProcess.command(["jobs", "logs", id, "--follow"], environment: environment, directory: folder.url)
        #expect(follow.status == 2, "\(follow.stderr)")
        #expect(follow.stderr.contains("no job with id"))
        worker.send(SIGTERM)
        #expect(await worker.waitForExit(timeout: .seconds(10)) == 0)
    }
}
