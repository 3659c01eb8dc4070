import Foundation
import Testing

/// The dashboard's server side with real processes on SQLite (issue 19): who may see it, the
/// CSRF check, escaping, read-only `worker dashboard`. The browser cases are in
/// ``WorkerDashboardBrowserTests``.
@Suite("worker run: dashboard", .serialized)
struct WorkerDashboardRunTests {
    static let token = "dashboard-test-token"
    /// Ten minutes from now: a job that runs then stays pending for the test.
    static var later: String { ISO8601DateFormatter().string(from: Date(timeIntervalSinceNow: 600)) }

    static func enqueue(_ prompt: String, _ environment: [String: String], _ folder: URL, extra: [String] = []) async throws -> String {
        let result = try await WorkerProcess.command(["enqueue", "--prompt", prompt] + extra, environment: environment, directory: folder)
        try #require(result.status == 0, "\(result.stderr)")
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test("with API_TOKEN: every page sends to the login form and everything else answers 401; a wrong token is refused; a forged cookie is not a session; CSRF missing or wrong is 403; a <script> prompt is text")
    func accessAndCSRF() async throws {
        let folder = try TemporaryDirectory()
        let port = try freePort()
        let environment = ["JOB_HANDLER": "echo", "HEALTH_CHECK_PORT": "\(port)", "API_TOKEN": Self.token]
        let worker = try WorkerProcess(environment: environment, directory: folder.url)
        defer { worker.kill9() }
        #expect(try await eventually("health") { try await http(port: port, path: "/health").status == 200 })
        let hostile = try await Self.enqueue("<script>alert('x')</script> & \"quotes\"", environment, folder.url, extra: ["--run-at", Self.later])
        let session = UUID().uuidString.lowercased()

        var browser = DashboardHTTP(port: port, folder: folder.url)
        for path in ["/ui", "/ui/jobs", "/ui/jobs?status=failed", "/ui/jobs/\(hostile)", "/ui/sessions/\(session)"] {
            let answer = try await browser.send("GET", path)
            #expect(answer.status == 303 && answer.headers["location"] == "/ui/login", "GET \(path): \(answer.status)")
        }
        #expect(try await browser.send("GET", "/ui/jobs/\(hostile)/events").status == 401)
        for path in ["/ui/jobs/\(hostile)/cancel", "/ui/jobs/\(hostile)/retry", "/ui/jobs/bulk", "/ui/logout"] {
            #expect(try await browser.send("POST", path, form: [("csrf", "x")]).status == 401, "POST \(path)")
        }
        // The login form, its CSRF cookie, and the security headers.
        let login = try await browser.send("GET", "/ui/login")
        #expect(login.status == 200 && login.body.contains(#"name="token""#))
        let policy = try #require(login.headers["content-security-policy"])
        #expect(policy.contains("script-src 'self'") && !policy.contains("unsafe-inline") && !policy.contains("http"))
        #expect(login.setCookies.contains { $0.hasPrefix("mobvibe_csrf=") && $0.contains("HttpOnly") && $0.contains("SameSite=Strict") })
        let wrong = try await browser.send("POST", "/ui/login", form: [("token", "not-it")])
        #expect(wrong.status == 401 && wrong.body.contains("That is not the API token") && browser.cookies["mobvibe_dashboard"] == nil)
        // A forged session: a future expiry with a made-up signature.
        var forger = browser
        forger.cookies["mobvibe_dashboard"] = "9999999999.\(String(repeating: "ab", count: 32))"
        #expect(try await forger.send("GET", "/ui").status == 303)

        let signIn = try await browser.send("POST", "/ui/login", form: [("token", Self.token)])
        #expect(signIn.status == 303 && signIn.headers["location"] == "/ui")
        let sessionCookie = try #require(signIn.setCookies.first { $0.hasPrefix("mobvibe_dashboard=") })
        #expect(sessionCookie.contains("HttpOnly") && sessionCookie.contains("SameSite=Strict") && sessionCookie.contains("Path=/ui"))
        #expect(!sessionCookie.contains("Secure"), "plain HTTP: a Secure cookie would not be kept")
        // Behind a TLS-terminating proxy: the session never travels over plain HTTP.
        var proxied = DashboardHTTP(port: port, folder: folder.url)
        _ = try await proxied.send("GET", "/ui/login")
        let overTLS = try await proxied.send("POST", "/ui/login", form: [("token", Self.token)], headers: ["X-Forwarded-Proto": "https"])
        #expect(overTLS.setCookies.contains { $0.hasPrefix("mobvibe_dashboard=") && $0.hasSuffix("; Secure") }, "\(overTLS.setCookies)")

        let overview = try await browser.send("GET", "/ui")
        #expect(overview.status == 200 && overview.body.contains(#"id="count-pending">1<"#), "\(overview.body.prefix(600))")
        let list = try await browser.send("GET", "/ui/jobs")
        #expect(list.status == 200 && list.headers["content-security-policy"] == policy)
        #expect(list.body.contains("&lt;script&gt;alert("), "\(list.body)")
        #expect(!list.body.contains("<script>alert"))
        let page = try await browser.send("GET", "/ui/jobs/\(hostile)")
        #expect(page.status == 200 && !page.body.contains("<script>alert") && page.body.contains("&lt;script&gt;"))
        // The page's only script is the dashboard's own file.
        let scripts = page.body.components(separatedBy: "<script").count - 1
        #expect(scripts == 1 && page.body.contains(#"<script src="/ui/assets/dashboard.js" defer></script>"#))

        // CSRF: missing, wrong, or another browser's token: 403, and nothing changes.
        let csrf = try #require(page.csrf)
        #expect(try await browser.send("POST", "/ui/jobs/\(hostile)/cancel", form: []).status == 403)
        #expect(try await browser.send("POST", "/ui/jobs/\(hostile)/cancel", form: [("csrf", String(repeating: "0", count: 64))]).status == 403)
        var other = DashboardHTTP(port: port, folder: folder.url)
        other.cookies["mobvibe_dashboard"] = browser.cookies["mobvibe_dashboard"]
        #expect(try await other.send("POST", "/ui/jobs/\(hostile)/cancel", form: [("csrf", csrf)]).status == 403, "a token without its CSRF cookie")
        #expect(try await browser.send("POST", "/ui/jobs/bulk", form: [("action", "cancel"), ("id", hostile), ("confirmed", "yes")]).status == 403)
        #expect(try await browser.send("GET", "/ui/jobs/\(hostile)").body.contains(#"id="job-status">pending<"#))

        let cancel = try await browser.send("POST", "/ui/jobs/\(hostile)/cancel", form: [("csrf", csrf)])
        #expect(cancel.status == 303 && cancel.headers["location"]?.hasPrefix("/ui/jobs/\(hostile)?notice=") == true)
        let after = try await browser.send("GET", cancel.headers["location"] ?? "/")
        #expect(after.body.contains(#"id="job-status">cancelled<"#) && after.body.contains("Cancelled: the job is cancelled."))
        // A notice of anyone's making (a link) is not shown; the dashboard's own (signed) is.
        #expect(!(try await browser.send("GET", "/ui/jobs/\(hostile)?notice=Session%20expired").body.contains("Session expired")))
        #expect(!(try await browser.send("GET", "/ui/jobs/\(hostile)?notice=Session%20expired&signed=\(String(repeating: "0", count: 64))").body.contains("Session expired")))

        // Another replica (`worker dashboard` on the same database, the same API_TOKEN) takes
        // the session and the CSRF token of a page the first one served.
        let second = try await Self.enqueue("for the other replica", environment, folder.url, extra: ["--run-at", Self.later])
        let replicaPort = try freePort()
        let replica = try WorkerProcess(["dashboard", "--port", "\(replicaPort)", "--allow-actions"], environment: environment, directory: folder.url)
        defer { replica.kill9() }
        #expect(try await eventually("the other replica") { try await http(port: replicaPort, path: "/ui/login").status == 200 })
        var elsewhere = DashboardHTTP(port: replicaPort, folder: folder.url)
        elsewhere.cookies = browser.cookies
        let across = try await elsewhere.send("POST", "/ui/jobs/\(second)/cancel", form: [("csrf", csrf)])
        #expect(across.status == 303, "a page of one replica posted to another: \(across.status) \(across.body.prefix(200))")
        replica.send(SIGTERM)
        #expect(await replica.waitForExit(timeout: .seconds(15)) == 0)

        // Signing out ends the session in this browser.
        #expect(try await browser.send("POST", "/ui/logout", form: [("csrf", csrf)]).status == 303)
        #expect(try await browser.send("GET", "/ui").status == 303)
    }

    @Test("worker dashboard: read-only without --allow-actions (no buttons, POSTs 403), actions with it; without API_TOKEN only this machine is answered")
    func standaloneDashboard() async throws {
        let folder = try TemporaryDirectory()
        let environment: [String: String] = ["JOB_HANDLER": "echo"]
        let failed = try await Self.enqueue("to retry", environment, folder.url, extra: ["--run-at", Self.later])
        #expect(try await WorkerProcess.command(["jobs", "cancel", failed], environment: environment, directory: folder.url).status == 0)

        func start(_ arguments: [String]) async throws -> (WorkerProcess, Int) {
            let port = try freePort()
            let process = try WorkerProcess(["dashboard", "--port", "\(port)"] + arguments, environment: environment, directory: folder.url)
            #expect(try await eventually("dashboard") { try await http(port: port, path: "/ui/login").status == 200 })
            return (process, port)
        }
        let (readOnly, port) = try await start(["--host", "0.0.0.0"])
        defer { readOnly.kill9() }
        // A second one on its port names the option that moves it (before: HEALTH_CHECK_PORT).
        let taken = try await WorkerProcess.command(["dashboard", "--port", "\(port)"], environment: environment, directory: folder.url)
        #expect(taken.status == 1 && taken.stderr.contains("--port") && !taken.stderr.contains("HEALTH_CHECK_PORT"), "\(taken)")
        var browser = DashboardHTTP(port: port, folder: folder.url)
        let list = try await browser.send("GET", "/ui/jobs")
        #expect(list.status == 200 && list.body.contains(failed) && !list.body.contains("bulk-retry") && !list.body.contains(#"name="id""#))
        let job = try await browser.send("GET", "/ui/jobs/\(failed)")
        #expect(job.status == 200 && !job.body.contains(#"id="retry""#) && !job.body.contains(#"id="cancel""#))
        let refused = try await browser.send("POST", "/ui/jobs/\(failed)/retry", form: [("csrf", list.csrf ?? "")])
        #expect(refused.status == 403 && refused.body.contains("--allow-actions"))
        // Another machine (this one's own non-loopback address) is refused without API_TOKEN.
        if let address = Self.nonLoopbackAddress() {
            var remote = DashboardHTTP(host: address, port: port, folder: folder.url)
            let answer = try await remote.send("GET", "/ui")
            #expect(answer.status == 403 && answer.body.contains("only on this machine"), "from \(address): \(answer.status)")
        } else {
            print("dashboard: no non-loopback address here; the loopback-only check is skipped")
        }
        readOnly.send(SIGTERM)
        #expect(await readOnly.waitForExit(timeout: .seconds(15)) == 0)

        let (actions, actionsPort) = try await start(["--allow-actions"])
        defer { actions.kill9() }
        var operator_ = DashboardHTTP(port: actionsPort, folder: folder.url)
        let page = try await operator_.send("GET", "/ui/jobs/\(failed)")
        #expect(page.body.contains(#"id="retry""#))
        let retry = try await operator_.send("POST", "/ui/jobs/\(failed)/retry", form: [("csrf", page.csrf ?? "")])
        #expect(retry.status == 303)
        let show = try await WorkerProcess.command(["jobs", "show", failed, "--json"], environment: environment, directory: folder.url)
        #expect(jsonObject(show.stdout)?["status"] as? String == "pending")
        actions.send(SIGTERM)
        #expect(await actions.waitForExit(timeout: .seconds(15)) == 0)

        // On a machine whose job commands share its network (as `worker run` configured so would
        // run them), this machine's requests are no proof either: nobody without API_TOKEN.
        let sharedPort = try freePort()
        let shared = try WorkerProcess(
            ["dashboard", "--port", "\(sharedPort)", "--allow-actions"],
            environment: environment.merging(["JOB_HANDLER": "command", "JOB_COMMAND": "/bin/cat", "JOB_SANDBOX": "bubblewrap", "JOB_NETWORK": "host"]) { $1 },
            directory: folder.url)
        defer { shared.kill9() }
        #expect(try await eventually("dashboard") { try await http(port: sharedPort, path: "/ui/login").status != 0 })
        let blocked = try await http(port: sharedPort, path: "/ui")
        #expect(blocked.status == 403 && blocked.body.contains("JOB_NETWORK=host"), "\(blocked.status) \(blocked.body.prefix(300))")
        shared.send(SIGTERM)
        #expect(await shared.waitForExit(timeout: .seconds(15)) == 0)
    }

    /// An IPv4 address of this machine other than loopback, if it has one.
    static func nonLoopbackAddress() -> String? {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let first = list else { return nil }
        defer { freeifaddrs(list) }
        for entry in sequence(first: first, next: { $0.pointee.ifa_next }) {
            guard let address = entry.pointee.ifa_addr, address.pointee.sa_family == UInt16(AF_INET) else { continue }
            var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
            guard getnameinfo(address, socklen_t(MemoryLayout<sockaddr_in>.size), &host, socklen_t(host.count), nil, 0, NI_NUMERICHOST) == 0 else { continue }
            let text = String(cString: host)
            if !text.hasPrefix("127.") { return text }
        }
        return nil
    }
}

extension WorkerDashboardRunTests {
    @Test("a job of many long lines: its page stays small (events read to about 2 MiB, each text cut with a note), and says that more follow")
    func jobPageOfLongLines() async throws {
        let folder = try TemporaryDirectory()
        // 300 lines of 60,000 characters: 18 MB of events.
        let script = try folder.script(
            "long-lines.sh", "#!/bin/sh\nline=$(head -c 60000 /dev/zero | tr '\\0' x)\ni=0\nwhile [ $i -lt 300 ]; do echo \"$line\"; i=$((i+1)); done\n")
        let port = try freePort()
        let environment = ["JOB_COMMAND": script.path, "HEALTH_CHECK_PORT": "\(port)", "JOB_WORKDIR_ROOT": folder.url.appendingPathComponent("jobs").path]
        let worker = try WorkerProcess(environment: environment, directory: folder.url)
        defer { worker.kill9() }
        #expect(try await eventually("health") { try await http(port: port, path: "/health").status == 200 })
        let id = try await Self.enqueue("long lines", environment, folder.url)
        #expect(try await eventually("completed", timeout: .seconds(60)) {
            jsonObject(try await WorkerProcess.command(["jobs", "show", id, "--json"], environment: environment, directory: folder.url).stdout)?["status"] as? String == "completed"
        })
        var browser = DashboardHTTP(port: port, folder: folder.url)
        let page = try await browser.send("GET", "/ui/jobs/\(id)")
        #expect(page.status == 200)
        #expect(page.body.utf8.count < 1_000_000, "the page is \(page.body.utf8.count) bytes")
        #expect(page.body.contains("bytes more: worker jobs logs ID --json"))
        #expect(page.body.contains("worker jobs logs \(id)</code> prints them all"), "the page says that more follow")
        worker.send(SIGTERM)
        #expect(await worker.waitForExit(timeout: .seconds(10)) == 0)
    }
}

extension WorkerDashboardRunTests {
    @Test("the overview's Workers table counts every running job of each worker, past the 500 it lists ids from")
    func workersTableCountsAll() async throws {
        let folder = try TemporaryDirectory()
        let environment: [String: String] = ["JOB_HANDLER": "echo"]
        let lines = (0..<610).map { #"{"prompt":"w \#($0)","runAt":"\#(Self.later)"}"# }.joined(separator: "\n")
        #expect(try await WorkerProcess.command(["enqueue", "--jsonl", "-"], environment: environment, directory: folder.url, stdin: Data(lines.utf8)).status == 0)
        // As two workers would hold them: 600 and 10 running jobs.
        let script = """
            import sqlite3; c = sqlite3.connect('worker.sqlite')
            ids = [r[0] for r in c.execute("SELECT id FROM coding_jobs ORDER BY id")]
            for index, id in enumerate(ids):
                c.execute("UPDATE coding_jobs SET status = 'processing', attempts = 1, locked_by = ? WHERE id = ?", ('worker-busy' if index < 600 else 'worker-light', id))
            c.commit()
            """
        let marked = try await WorkerProcess.command(["python3", "-c", script], environment: ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"],
            directory: folder.url, executable: URL(fileURLWithPath: "/usr/bin/env"))
        try #require(marked.status == 0, "\(marked.stderr)")
        let port = try freePort()
        let dashboard = try WorkerProcess(["dashboard", "--port", "\(port)"], environment: environment, directory: folder.url)
        defer { dashboard.kill9() }
        #expect(try await eventually("dashboard") { try await http(port: port, path: "/ui/login").status == 200 })
        var browser = DashboardHTTP(port: port, folder: folder.url)
        let overview = try await browser.send("GET", "/ui")
        // Before: counted from the newest 500 running jobs (worker-busy showed 490).
        #expect(overview.body.contains("<td>worker-busy</td><td>600</td>") && overview.body.contains("and 590 more"), "\(overview.body)")
        #expect(overview.body.contains("<td>worker-light</td><td>10</td>"), "\(overview.body)")
    }

    @Test("the list's next page keeps a text filter holding + and & as it was typed; a control character in a filter is left out, said so; times say UTC")
    func nextPageKeepsFilter() async throws {
        let folder = try TemporaryDirectory()
        let environment: [String: String] = ["JOB_HANDLER": "echo"]
        let lines = (0..<55).map { #"{"prompt":"c++ & co \#($0)","runAt":"\#(Self.later)"}"# }.joined(separator: "\n")
        #expect(try await WorkerProcess.command(["enqueue", "--jsonl", "-"], environment: environment, directory: folder.url, stdin: Data(lines.utf8)).status == 0)
        let port = try freePort()
        let dashboard = try WorkerProcess(["dashboard", "--port", "\(port)"], environment: environment, directory: folder.url)
        defer { dashboard.kill9() }
        #expect(try await eventually("dashboard") { try await http(port: port, path: "/ui/login").status == 200 })
        var browser = DashboardHTTP(port: port, folder: folder.url)
        let first = try await browser.send("GET", "/ui/jobs?q=c%2B%2B%20%26%20co")
        #expect(first.status == 200 && first.body.contains(#"value="c++ &amp; co""#), "\(first.body.prefix(400))")
        let href = try #require(first.body.range(of: #"<a href="([^"]*)" id="next-page">"#, options: .regularExpression).map { String(first.body[$0]) })
        let next = String(href.dropFirst(#"<a href=""#.count).prefix { $0 != "\"" }).replacingOccurrences(of: "&amp;", with: "&")
        let second = try await browser.send("GET", next)
        #expect(second.status == 200 && second.body.contains(#"value="c++ &amp; co""#), "next page \(next): \(second.body.prefix(400))")
        #expect(second.body.contains("c++ &amp; co 4"), "the older jobs of the same filter")
        // A filter with a broken escape is searched for as typed: it matches nothing here
        // (before, it was dropped, and every job was listed).
        let broken = try await browser.send("GET", "/ui/jobs?q=%FF")
        #expect(broken.status == 200 && !broken.body.contains("c++ &amp; co"), "\(broken.body.prefix(400))")
        // A control character is said to be left out (on PostgreSQL, whose text holds no NUL,
        // `?q=%00` was a 500), and times say their zone.
        let control = try await browser.send("GET", "/ui/jobs?q=a%00b")
        #expect(control.status == 200 && control.body.contains("holds a control character"), "\(control.body.prefix(600))")
        #expect(first.body.contains(" UTC"), "times without their zone: \(first.body.prefix(600))")
        dashboard.send(SIGTERM)
        #expect(await dashboard.waitForExit(timeout: .seconds(15)) == 0)
    }
}
