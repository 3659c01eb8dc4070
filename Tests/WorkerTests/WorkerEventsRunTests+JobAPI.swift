import Foundation
import Testing
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The job API on the worker's HTTP port, with real `worker run` processes on SQLite: bearer
/// tokens, the job as JSON, enqueue and cancel, and the Server-Sent Events stream a phone follows
/// and resumes (issue 15). Nested in the events suite, so that their worker and client processes
/// run one test at a time (the two suites side by side starved the in-process tests on two cores).
extension WorkerEventsRunTests {
    @Suite("worker run: job API and event stream")
    struct JobAPI {
        static let token = "test-token-0123456789abcdef"
        static let client = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/sse-client.py").path

        /// A request with an optional bearer token; returns status and body.
        static func request(
            _ method: String, port: Int, path: String, token: String? = Self.token, body: String? = nil
        ) async throws -> (status: Int, body: String) {
            var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)\(path)")!)
            request.httpMethod = method
            request.timeoutInterval = 10
            if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
            if let body {
                request.httpBody = Data(body.utf8)
                request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            }
            let (data, response) = try await URLSession.shared.data(for: request)
            return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
        }

        /// Follows the job's event stream with the Python client: `(status, events, how it ended)`.
        static func follow(
            port: Int, job: String, token: String = Self.token, lastEventID: String = "", limit: Int = 0, quietSeconds: Double? = nil,
            directory: URL
        ) async throws -> (status: Int, events: [[String: String]], end: String) {
            // The test's own PATH: python3 where the suite found it.
            let result = try await WorkerProcess.command(
                ["python3", client, "http://127.0.0.1:\(port)/jobs/\(job)/events", token, lastEventID, "\(limit)"] + (quietSeconds.map { ["\($0)"] } ?? []),
                environment: ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"], directory: directory,
                executable: URL(fileURLWithPath: "/usr/bin/env"))
            let lines = result.stdout.split(separator: "\n").map(String.init)
            let status = Int(lines.first?.dropFirst(7) ?? "") ?? 0
            let events = lines.compactMap { line -> [String: String]? in
                (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: String]
            }
            return (status, events, lines.last ?? "")
        }

        static func start(_ folder: URL, _ extra: [String: String] = [:]) throws -> (WorkerProcess, [String: String], Int) {
            let port = try freePort()
            var environment = ["HEALTH_CHECK_PORT": "\(port)", "LOG_FORMAT": "json", "POLL_INTERVAL_MS": "200", "API_TOKEN": token]
            environment.merge(extra) { $1 }
            return (try WorkerProcess(environment: environment, directory: folder), environment, port)
        }

        @Test("no token or a wrong one: 401; an unknown job: 404; with the token: enqueue, show and cancel")
        func authentication() async throws {
            let folder = try TemporaryDirectory()
            let (worker, _, port) = try Self.start(folder.url, ["MAX_CONCURRENT_JOBS": "1"])
            defer { worker.kill9() }
            #expect(try await eventually("ready") { try await http(port: port, path: "/ready").status == 200 })
            let unknown = UUID().uuidString.lowercased()
            for token in [nil, "wrong-token-0123456789", String(Self.token.dropLast()), Self.token + "x"] {
                #expect(try await Self.request("GET", port: port, path: "/jobs/\(unknown)", token: token).status == 401, "\(token ?? "no token")")
                #expect(try await Self.request("GET", port: port, path: "/jobs/\(unknown)/events", token: token).status == 401)
                #expect(try await Self.request("POST", port: port, path: "/jobs", token: token, body: #"{"prompt":"x"}"#).status == 401)
            }
            #expect(try await Self.request("GET", port: port, path: "/jobs/\(unknown)").status == 404)
            #expect(try await Self.request("GET", port: port, path: "/jobs/not-a-uuid").status == 404)
            #expect(try await Self.request("GET", port: port, path: "/jobs/\(unknown)/events").status == 404)
            #expect(try await Self.request("POST", port: port, path: "/jobs/\(unknown)/cancel").status == 404)
            // /health, /ready and /metrics stay open.
            #expect(try await http(port: port, path: "/metrics").status == 200)

            let bad = try await Self.request("POST", port: port, path: "/jobs", body: #"{"prompt":"x","priority":"high"}"#)
            #expect(bad.status == 400 && bad.body.contains("priority"), "\(bad.body)")
            let created = try await Self.request("POST", port: port, path: "/jobs", body: #"{"prompt":"slow","payload":{"sleepMs":20000}}"#)
            #expect(created.status == 201)
            let id = try #require(jsonObject(created.body)?["id"] as? String)
            #expect(try await eventually("running") {
                jsonObject(try await Self.request("GET", port: port, path: "/jobs/\(id)").body)?["status"] as? String == "processing"
            })
            let cancelled = try await Self.request("POST", port: port, path: "/jobs/\(id)/cancel")
            #expect(cancelled.status == 200)
            #expect(jsonObject(cancelled.body)?["status"] as? String == "cancelled")
            #expect(try await Self.request("POST", port: port, path: "/jobs/\(id)/cancel").status == 409)
            worker.send(SIGTERM)
            #expect(await worker.waitForExit(timeout: .seconds(10)) == 0)
        }

        @Test(
            "on PostgreSQL: a value the database cannot store (NUL in the prompt or the payload) is 400 naming why, not 500; a lower-case bearer scheme is the token; a cancel's store fault is not 409; a failed read is a 500 that says so, logged",
            .enabled(if: TestPostgres.isAvailable, "needs TEST_DATABASE_URL: run scripts/test"))
        func refusedValues() async throws {
            let folder = try TemporaryDirectory()
            let table = TestPostgres.freshTable()
            let (worker, _, port) = try Self.start(folder.url, ["DATABASE_URL": TestPostgres.url!, "JOBS_TABLE": table, "MAX_CONCURRENT_JOBS": "1"])
            defer { worker.kill9() }
            #expect(try await eventually("ready") { try await http(port: port, path: "/ready").status == 200 })
            // Before: 500 (a backend retries a 5xx; this input never goes in).
            for body in [#"{"prompt":"a\u0000b"}"#, #"{"prompt":"p","payload":{"k":"\u0000"}}"#] {
                let refused = try await Self.request("POST", port: port, path: "/jobs", body: body)
                #expect(refused.status == 400, "\(body): \(refused.status) \(refused.body)")
                #expect(jsonObject(refused.body)?["error"] is String, "\(refused.body)")
            }
            #expect(try await TestPostgres.sql("SELECT count(*) FROM public.\(table)") == "0")
            // The scheme of an Authorization header is case-insensitive (RFC 9110, 11.1).
            var request = URLRequest(url: URL(string: "http://127.0.0.1:\(port)/jobs")!)
            request.httpMethod = "POST"
            request.httpBody = Data(#"{"prompt":"lower-case scheme"}"#.utf8)
            request.setValue("bearer \(Self.token)", forHTTPHeaderField: "Authorization")
            let (_, response) = try await URLSession.shared.data(for: request)
            #expect((response as? HTTPURLResponse)?.statusCode == 201)
            // A cancel the database refuses for lack of a privilege is the server's fault (500),
            // not a conflict with the job's state (409, which says "it has ended").
            let created = try await Self.request("POST", port: port, path: "/jobs", body: #"{"prompt":"p","runAt":"2100-01-01T00:00:00Z"}"#)
            let id = try #require(jsonObject(created.body)?["id"] as? String, "\(created.body)")
            try await TestPostgres.sql("ALTER TABLE public.\(table) ADD CONSTRAINT no_cancel CHECK (status <> 'cancelled') NOT VALID")
            let refusedCancel = try await Self.request("POST", port: port, path: "/jobs/\(id)/cancel")
            #expect(refusedCancel.status == 500, "\(refusedCancel.status) \(refusedCancel.body)")
            try await TestPostgres.sql("ALTER TABLE public.\(table) DROP CONSTRAINT no_cancel")
            #expect(try await Self.request("POST", port: port, path: "/jobs/\(id)/cancel").status == 200)
            #expect(try await Self.request("POST", port: port, path: "/jobs/\(id)/cancel").status == 409)
            // A read the database fails (here a column gone) is a 500 that says so, and a line in
            // the log: before, an empty 500 and no line at any LOG_LEVEL.
            try await TestPostgres.sql("ALTER TABLE public.\(table) RENAME COLUMN prompt TO prompt_gone")
            let failed = try await Self.request("GET", port: port, path: "/jobs/\(id)")
            #expect(failed.status == 500 && jsonObject(failed.body)?["error"] is String, "\(failed.status) \(failed.body)")
            #expect(!failed.body.contains("prompt"), "a driver's error stays in the log: \(failed.body)")
            #expect(try await eventually("logged") {
                worker.stdout.contains("Request failed") && worker.stdout.contains("/jobs/\(id)") && worker.stdout.contains("prompt")
            }, "\(worker.stdout)")
            try await TestPostgres.sql("ALTER TABLE public.\(table) RENAME COLUMN prompt_gone TO prompt")
            worker.send(SIGTERM)
            #expect(await worker.waitForExit(timeout: .seconds(10)) == 0)
            try await TestPostgres.sql("DROP TABLE public.\(table) CASCADE")
        }

        @Test("a stream opened on a job retried after it failed goes past the failed attempt's ending event: it stays open while the job waits")
        func retriedJobStream() async throws {
            let folder = try TemporaryDirectory()
            let (worker, environment, port) = try Self.start(folder.url)
            defer { worker.kill9() }
            #expect(try await eventually("ready") { try await http(port: port, path: "/ready").status == 200 })
            let created = try await Self.request("POST", port: port, path: "/jobs", body: #"{"prompt":"p","maxAttempts":1,"payload":{"failTimes":1}}"#)
            let id = try #require(jsonObject(created.body)?["id"] as? String)
            #expect(try await eventually("failed") {
                jsonObject(try await Self.request("GET", port: port, path: "/jobs/\(id)").body)?["status"] as? String == "failed"
            })
            worker.send(SIGTERM)
            #expect(await worker.waitForExit(timeout: .seconds(10)) == 0)
            // Retried with no worker of its queue: it waits, pending.
            #expect(try await WorkerProcess.command(["jobs", "retry", id], environment: environment, directory: folder.url).status == 0)
            let (other, _, otherPort) = try Self.start(folder.url, ["WORKER_QUEUES": "elsewhere"])
            defer { other.kill9() }
            #expect(try await eventually("ready") { try await http(port: otherPort, path: "/ready").status == 200 })
            let stream = try await Self.follow(port: otherPort, job: id, quietSeconds: 2, directory: folder.url)
            #expect(stream.status == 200)
            #expect(stream.events.last?["data"]?.contains("failed") == true, "\(stream.events)")
            // Before: "END", the stream closed at the first attempt's `failed`.
            #expect(stream.end == "OPEN", "\(stream.end)")
            other.send(SIGTERM)
            #expect(await other.waitForExit(timeout: .seconds(10)) == 0)
        }

        @Test("a body that is not UTF-8 is refused with 400, not enqueued with U+FFFD in place of its bytes")
        func bodyNotUTF8() async throws {
            let folder = try TemporaryDirectory()
            let (worker, _, port) = try Self.start(folder.url, ["MAX_CONCURRENT_JOBS": "1"])
            defer { worker.kill9() }
            #expect(try await eventually("ready") { try await http(port: port, path: "/ready").status == 200 })
            let body = folder.url.appendingPathComponent("body.json")
            try (Data(#"{"prompt":""#.utf8) + Data([0xFF, 0xFE]) + Data(#""}"#.utf8)).write(to: body)
            let status = try await Self.curl(
                "POST", port: port, path: "/jobs", headers: ["Authorization: Bearer \(Self.token)", "Content-Type: application/json"],
                extra: ["--max-time", "10", "--data-binary", "@\(body.path)"], directory: folder.url)
            #expect(status == 400)
            let listed = try await WorkerProcess.command(["jobs", "list", "--json"], environment: [:], directory: folder.url)
            let jobs = try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [Any]
            #expect(jobs?.count == 0, "nothing enqueued: \(listed.stdout) \(listed.stderr)")
            worker.send(SIGTERM)
            #expect(await worker.waitForExit(timeout: .seconds(10)) == 0)
        }

        @Test("a client that stops reading holds the worker to a page of about a MiB, however large the events after small ones")
        func slowClientMemory() async throws {
            let folder = try TemporaryDirectory()
            let (worker, _, port) = try Self.start(folder.url)
            defer { worker.kill9() }
            #expect(try await eventually("ready") { try await http(port: port, path: "/ready").status == 200 })
            let created = try await Self.request("POST", port: port, path: "/jobs", body: #"{"prompt":"p"}"#)
            let id = try #require(jsonObject(created.body)?["id"] as? String)
            #expect(try await eventually("completed") {
                jsonObject(try await Self.request("GET", port: port, path: "/jobs/\(id)").body)?["status"] as? String == "completed"
            })
            // Its events replaced by 64 small ones, then 400 of 65,000 bytes (as a command's output
            // lines may be, up to JOB_EVENT_MAX_BYTES), then its end. Before, the page after the
            // small ones was sized by them: 400 large events (26 MB, and as much again as SSE
            // text) held at once for a client that does not read.
            let sql = """
                DELETE FROM coding_job_events WHERE job_id = '\(id)';
                WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 464)
                INSERT INTO coding_job_events (job_id, seq, attempt, created_at, kind, data)
                SELECT '\(id)', i, 1, strftime('%s', 'now') * 1000, 'output', CASE WHEN i <= 64 THEN '{"text":"small"}' ELSE json_object('text', printf('%.65000c', 'x')) END FROM n;
                INSERT INTO coding_job_events (job_id, seq, attempt, created_at, kind, data)
                VALUES ('\(id)', 465, 1, strftime('%s', 'now') * 1000, 'status', '{"status":"completed"}');
                """
            let inserted = try await WorkerProcess.command(
                // Waiting for the running worker's own writes (its rescue sweep), as it waits for others'.
                ["sqlite3", "-cmd", ".timeout 10000", folder.url.appendingPathComponent("worker.sqlite").path, sql],
                environment: ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"], directory: folder.url,
                executable: URL(fileURLWithPath: "/usr/bin/env"))
            #expect(inserted.status == 0, "\(inserted.stderr)")
            func peakRSSKiB() throws -> Int {
                let status = try String(contentsOfFile: "/proc/\(worker.pid)/status", encoding: .utf8)
                let line = status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") } ?? ""
                return Int(line.split(separator: " ").dropFirst().first ?? "") ?? -1
            }
            let before = try peakRSSKiB()
            // A client that reads the answer's head, then nothing for three seconds.
            let script = """
                import http.client, sys, time
                c = http.client.HTTPConnection("127.0.0.1", \(port), timeout=30)
                c.request("GET", "/jobs/\(id)/events", headers={"Authorization": "Bearer \(Self.token)"})
                r = c.getresponse()
                print(r.status, flush=True)
                time.sleep(3)
                """
            let client = try await WorkerProcess.command(
                ["python3", "-c", script], environment: ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"],
                directory: folder.url, executable: URL(fileURLWithPath: "/usr/bin/env"))
            #expect(client.stdout.hasPrefix("200"), "\(client.stdout) \(client.stderr)")
            let grown = try peakRSSKiB() - before
            #expect(before > 0)
            // A page of about a MiB, twice over (events and their SSE text), and what the socket
            // took: well under 20 MB. Before: over 50 MB.
            #expect(grown < 20_000, "the worker's peak RSS grew by \(grown) KiB")
            worker.send(SIGTERM)
            #expect(await worker.waitForExit(timeout: .seconds(10)) == 0)
        }

        @Test("resume: a client reads part of the stream, hangs up, and goes on from Last-Event-ID: the union is the whole stream, once; the stream closes after the job's end")
        func resume() async throws {
            let folder = try TemporaryDirectory()
            let (worker, _, port) = try Self.start(folder.url)
            defer { worker.kill9() }
            #expect(try await eventually("ready") { try await http(port: port, path: "/ready").status == 200 })
            // Ten output events, one every 300 ms.
            let created = try await Self.request("POST", port: port, path: "/jobs", body: #"{"prompt":"p","payload":{"sleepMs":3000}}"#)
            let id = try #require(jsonObject(created.body)?["id"] as? String)
            let first = try await Self.follow(port: port, job: id, limit: 4, directory: folder.url)
            #expect(first.status == 200)
            #expect(first.end == "STOP")
            #expect(first.events.count == 4)
            let lastSeen = try #require(first.events.last?["id"])
            let rest = try await Self.follow(port: port, job: id, lastEventID: lastSeen, directory: folder.url)
            #expect(rest.end == "END", "the server closes the stream after the job's end")
            let all = first.events + rest.events
            #expect(all.compactMap { Int($0["id"] ?? "") } == Array(1..<all.count + 1), "no gap, no duplicate")
            #expect(all.first?["event"] == "status" && all.last?["event"] == "status")
            let last = try #require(jsonObject(all.last?["data"] ?? ""))
            #expect((last["data"] as? [String: Any])?["status"] as? String == "completed")
            #expect(all.filter { $0["event"] == "output" }.count == 6)
            // ?after= is the same as Last-Event-ID, and a finished job's stream replays and closes.
            let replay = try await Self.follow(port: port, job: id, lastEventID: "", directory: folder.url)
            #expect(replay.events.map { $0["id"] } == all.map { $0["id"] })
            worker.send(SIGTERM)
            #expect(await worker.waitForExit(timeout: .seconds(10)) == 0)
        }

        @Test("SIGTERM while a client follows a running job: the stream ends and the worker exits 0 in time")
        func shutdownWithFollower() async throws {
            let folder = try TemporaryDirectory()
            let (worker, _, port) = try Self.start(folder.url, ["SHUTDOWN_TIMEOUT_MS": "500"])
            defer { worker.kill9() }
            #expect(try await eventually("ready") { try await http(port: port, path: "/ready").status == 200 })
            let created = try await Self.request("POST", port: port, path: "/jobs", body: #"{"prompt":"p","payload":{"sleepMs":60000}}"#)
            let id = try #require(jsonObject(created.body)?["id"] as? String)
            let follower = try WorkerProcess(
                ["python3", Self.client, "http://127.0.0.1:\(port)/jobs/\(id)/events", Self.token, "", "0"],
                environment: ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"], directory: folder.url,
                executable: URL(fileURLWithPath: "/usr/bin/env"))
            defer { follower.kill9() }
            // Following: it has received the job's first output.
            #expect(try await eventually("following", timeout: .seconds(20)) { follower.stdout.contains(#""event": "output""#) })
            let clock = ContinuousClock()
            let start = clock.now
            worker.send(SIGTERM)
            #expect(await worker.waitForExit(timeout: .seconds(15)) == 0)
            #expect(clock.now - start < .seconds(8))
            #expect(await follower.waitForExit(timeout: .seconds(10)) == 0)
            #expect(follower.stdout.hasPrefix("STATUS 200"))
            #expect(follower.stdout.hasSuffix("END\n"), "the stream ended: \(follower.stdout.suffix(200))")
        }

        /// `curl` to the worker's port with `headers` (URLSession sets `Host` itself): the status.
        static func curl(
            _ method: String, port: Int, path: String, headers: [String], body: String? = nil, extra: [String] = ["--max-time", "10"], directory: URL
        ) async throws -> Int {
            var arguments = ["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", method] + extra
            for header in headers { arguments += ["-H", header] }
            if let body { arguments += ["--data-raw", body] }
            let result = try await WorkerProcess.command(
                arguments + ["http://127.0.0.1:\(port)\(path)"], environment: [:], directory: directory, executable: URL(fileURLWithPath: "/usr/bin/curl"))
            return Int(result.stdout) ?? 0
        }

        @Test("without API_TOKEN: this machine's requests only, not another site's page posting to 127.0.0.1 (Origin) nor one whose name resolved to it (Host) nor a proxy's (X-Forwarded-For, ...); none at all when job commands share the network")
        func loopbackWithoutToken() async throws {
            let folder = try TemporaryDirectory()
            let (worker, environment, port) = try Self.start(folder.url, ["API_TOKEN": ""])
            defer { worker.kill9() }
            #expect(try await eventually("ready") { try await http(port: port, path: "/ready").status == 200 })
            let unknown = "/jobs/\(UUID().uuidString.lowercased())"
            #expect(try await Self.curl("GET", port: port, path: unknown, headers: [], directory: folder.url) == 404)
            #expect(try await Self.curl("GET", port: port, path: unknown, headers: ["Host: localhost:\(port)"], directory: folder.url) == 404)
            // DNS rebinding: the page's own name in Host.
            #expect(try await Self.curl("GET", port: port, path: unknown, headers: ["Host: attacker.example:\(port)"], directory: folder.url) == 403)
            #expect(try await Self.curl("GET", port: port, path: "/ui", headers: ["Host: attacker.example"], directory: folder.url) == 403)
            // A reverse proxy on this machine passing on a visitor's request (nginx sends its
            // upstream, 127.0.0.1:port, as Host): refused once it says that it forwarded.
            for header in ["X-Forwarded-For: 203.0.113.9", "X-Real-IP: 203.0.113.9", "Forwarded: for=203.0.113.9", "Via: 1.1 proxy"] {
                #expect(try await Self.curl("GET", port: port, path: unknown, headers: [header], directory: folder.url) == 403, "\(header)")
                #expect(try await Self.curl("GET", port: port, path: "/ui", headers: [header], directory: folder.url) == 403, "\(header)")
                #expect(try await Self.curl(
                    "POST", port: port, path: "/jobs", headers: [header, "Content-Type: application/json"],
                    body: #"{"prompt":"through a proxy"}"#, directory: folder.url) == 403, "\(header)")
            }
            // Another site's page posting a job (a "simple" request, which a browser sends without asking).
            let forged = try await Self.curl(
                "POST", port: port, path: "/jobs", headers: ["Origin: https://attacker.example", "Content-Type: text/plain"],
                body: #"{"prompt":"from another site"}"#, directory: folder.url)
            #expect(forged == 403)
            // The dashboard's own page (same origin) and a program (no Origin) may.
            #expect(try await Self.curl(
                "POST", port: port, path: "/jobs", headers: ["Origin: http://127.0.0.1:\(port)", "Content-Type: application/json"],
                body: #"{"prompt":"from this machine"}"#, directory: folder.url) == 201)
            let listed = try await WorkerProcess.command(["jobs", "list", "--json"], environment: environment, directory: folder.url)
            #expect(listed.stdout.contains("from this machine") && !listed.stdout.contains("from another site") && !listed.stdout.contains("through a proxy"), "\(listed.stdout)")
            worker.send(SIGTERM)
            #expect(await worker.waitForExit(timeout: .seconds(10)) == 0)

            // Production, commands unconfined: a command could call the API from 127.0.0.1.
            let (unconfined, _, unconfinedPort) = try Self.start(folder.url, [
                "API_TOKEN": "", "APP_ENV": "production", "JOB_SANDBOX": "none", "JOB_COMMAND": "/bin/cat",
            ])
            defer { unconfined.kill9() }
            #expect(try await eventually("ready") { try await http(port: unconfinedPort, path: "/ready").status == 200 })
            let refused = try await http(port: unconfinedPort, path: unknown)
            #expect(refused.status == 403 && refused.body.contains("JOB_SANDBOX=none"), "\(refused)")
            #expect(try await http(port: unconfinedPort, path: "/ui").status == 403)
            #expect(unconfined.stdout.contains("refuse every request until API_TOKEN is set"))
            unconfined.send(SIGTERM)
            #expect(await unconfined.waitForExit(timeout: .seconds(10)) == 0)

            // Development, commands unconfined as JOB_USER (root only: the worker becomes that
            // user for each command): the user keeps them from the worker's files and rows,
            // and a request from 127.0.0.1 without the token would undo that. Before: let in.
            if getuid() == 0 {
                let (asUser, _, asUserPort) = try Self.start(folder.url, [
                    "API_TOKEN": "", "JOB_SANDBOX": "none", "JOB_USER": "nobody", "JOB_COMMAND": "/bin/cat",
                ])
                defer { asUser.kill9() }
                #expect(try await eventually("ready") { try await http(port: asUserPort, path: "/ready").status == 200 })
                let refusedAsUser = try await http(port: asUserPort, path: unknown)
                #expect(refusedAsUser.status == 403 && refusedAsUser.body.contains("JOB_USER"), "\(refusedAsUser)")
                #expect(try await http(port: asUserPort, path: "/ui").status == 403)
                asUser.send(SIGTERM)
                #expect(await asUser.waitForExit(timeout: .seconds(10)) == 0)
            }
        }
    }
}
