import Foundation
import Testing

/// Issue 15's resume contract where it is hardest: a phone that follows a job's events over SSE
/// while the worker running the job is killed and PostgreSQL restarts, resuming each time from
/// the last id it holds.
extension WorkerEventsRunTests.JobAPI {
    @Test(
        "on PostgreSQL: a client resuming by Last-Event-ID across a kill -9 of the worker and a PostgreSQL restart gets the whole stream, once, across both attempts",
        .enabled(if: TestPostgres.isAvailable, "needs PostgreSQL binaries: run scripts/test"))
    func resumeAcrossKillAndRestart() async throws {
        let postgres = try await PrivatePostgres.make()
        defer { postgres.destroy() }
        let folder = try TemporaryDirectory()
        let script = try WorkerEventsRunTests.script("steps.sh", in: folder.url, """
            #!/bin/bash
            cat > /dev/null
            for i in $(seq 1 20); do echo "attempt $JOB_ATTEMPT step $i"; sleep 0.4; done
            """)
        let settings = [
            "DATABASE_URL": postgres.url, "JOB_COMMAND": script, "LEASE_DURATION_MS": "2000", "JOB_ENV_PASSTHROUGH": "JOB_ATTEMPT",
            "JOB_WORKDIR_ROOT": folder.url.appendingPathComponent("jobs").path,
        ]
        let (first, _, firstPort) = try Self.start(folder.url, settings)
        defer { first.kill9() }
        #expect(try await eventually("first worker ready", timeout: .seconds(30)) { try await http(port: firstPort, path: "/ready").status == 200 })
        let created = try await Self.request("POST", port: firstPort, path: "/jobs", body: #"{"prompt":"p"}"#)
        let id = try #require(jsonObject(created.body)?["id"] as? String, "\(created.status) \(created.body)")

        // Attempt 1, followed on the first worker: claimed, started, two lines; then the worker dies.
        var all = try await Self.follow(port: firstPort, job: id, limit: 4, directory: folder.url).events
        #expect(all.count == 4)
        first.kill9()

        // The second worker rescues the job once the lease has expired; the client resumes there.
        let (second, _, secondPort) = try Self.start(folder.url, settings)
        defer { second.kill9() }
        #expect(try await eventually("second worker ready", timeout: .seconds(30)) { try await http(port: secondPort, path: "/ready").status == 200 })
        let resumed = try await Self.follow(port: secondPort, job: id, lastEventID: try #require(all.last?["id"]), limit: 6, directory: folder.url)
        #expect(resumed.status == 200 && resumed.events.count == 6)
        all += resumed.events

        // PostgreSQL restarts while the client follows attempt 2 live; whatever ended its stream,
        // it resumes from the last id it holds until the job's final event.
        let heldBeforeRestart = try #require(all.last?["id"])
        async let during = Self.follow(port: secondPort, job: id, lastEventID: heldBeforeRestart, quietSeconds: 20, directory: folder.url)
        try await Task.sleep(for: .milliseconds(500))
        try await postgres.stop(mode: "immediate")
        try await Task.sleep(for: .seconds(1))
        try await postgres.start()
        all += try await during.events
        var resumes = 0
        while Self.status(of: all.last) != "completed" && resumes < 20 {
            resumes += 1
            try await Task.sleep(for: .milliseconds(500))
            let next = try await Self.follow(port: secondPort, job: id, lastEventID: all.last?["id"] ?? "", quietSeconds: 20, directory: folder.url)
            all += next.events
        }
        let ids = all.compactMap { Int($0["id"] ?? "") }
        #expect(ids == Array(1..<ids.count + 1), "no gap, no duplicate: \(ids)")
        #expect(Self.status(of: all.last) == "completed", "the stream ends with the job's end")
        let attempts = all.compactMap { jsonObject($0["data"] ?? "")?["attempt"] as? Int }
        #expect(attempts.first == 1 && attempts.last == 2 && attempts == attempts.sorted(), "\(attempts)")
        // The client's union is what the database holds: every event, once.
        #expect(try await postgres.sql("SELECT count(*) || ' ' || max(seq) FROM coding_job_events WHERE job_id = '\(id)'") == "\(ids.count) \(ids.count)")
        second.send(SIGTERM)
        #expect(await second.waitForExit(timeout: .seconds(15)) == 0)
    }

    /// The status a status event carries (`nil` for any other event).
    static func status(of event: [String: String]?) -> String? {
        guard let event, event["event"] == "status" else { return nil }
        return (jsonObject(event["data"] ?? "")?["data"] as? [String: Any])?["status"] as? String
    }
}
