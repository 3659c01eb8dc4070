import Foundation
import Testing

/// The dashboard in headless Chromium (Debian's `chromium` and `chromium-driver`, driven by
/// selenium from PyPI; `scripts/test` installs them): the cases of issue 19 are in
/// `Fixtures/dashboard-browser.py`, against a real `worker run` on SQLite with a command handler.
/// Screenshots of each page are saved in `.build/dashboard-screenshots/`.
@Suite("worker run: dashboard in a browser", .serialized)
struct WorkerDashboardBrowserTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    static let screenshots = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent(".build/dashboard-screenshots")

    @Test("login, overview = worker stats, filters, a job and its live lines, cancel, bulk retry of 50, escaping, phone width and dark mode")
    func browserCases() async throws {
        let missing = ["/usr/bin/chromium", "/usr/bin/chromedriver"].filter { !FileManager.default.isExecutableFile(atPath: $0) }
        try #require(missing.isEmpty, "install Debian's chromium and chromium-driver (scripts/test does): missing \(missing)")
        let folder = try TemporaryDirectory()
        let port = try freePort()
        let trigger = folder.url.appendingPathComponent("trigger").path
        let environment = [
            "HEALTH_CHECK_PORT": "\(port)", "API_TOKEN": "browser-test-token", "POLL_INTERVAL_MS": "200",
            "JOB_COMMAND": Self.fixtures.appendingPathComponent("dashboard-job.sh").path, "JOB_ENV_PASSTHROUGH": "TRIGGER", "TRIGGER": trigger,
            "JOB_WORKDIR_ROOT": folder.url.appendingPathComponent("jobs").path, "RETRY_BACKOFF_BASE_MS": "50", "WORKER_QUEUES": "default,bulk",
        ]
        let worker = try WorkerProcess(environment: environment, directory: folder.url)
        defer { worker.kill9() }
        #expect(try await eventually("health") { try await http(port: port, path: "/health").status == 200 })
        try? FileManager.default.removeItem(at: Self.screenshots)

        // Selenium is pointed at the system's browser and driver, and told not to fetch anything.
        // The test's own PATH: python3 where the suite found it (and installed selenium).
        let script = try WorkerProcess(
            ["python3", Self.fixtures.appendingPathComponent("dashboard-browser.py").path],
            environment: [
                "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin",
                "DASHBOARD_URL": "http://127.0.0.1:\(port)", "API_TOKEN": "browser-test-token", "WORKER_BIN": WorkerProcess.binary.path,
                "WORK_DIR": folder.url.path, "TRIGGER": trigger, "SCREENSHOT_DIR": Self.screenshots.path, "PYTHONUNBUFFERED": "1",
                "SE_OFFLINE": "true", "SE_AVOID_STATS": "true",
            ],
            directory: folder.url, executable: URL(fileURLWithPath: "/usr/bin/env"))
        defer { script.kill9() }
        let status = await script.waitForExit(timeout: .seconds(300))
        print(script.stdout)
        #expect(status == 0, "\(script.stdout)\n\(script.stderr.suffix(3_000))\nworker:\n\(worker.stdout.suffix(3_000))")
        #expect(script.stdout.contains("14 browser cases passed"))
        for page in ["login", "overview", "jobs", "job", "job-live", "session", "bulk-confirm", "overview-phone-dark"] {
            #expect(FileManager.default.fileExists(atPath: Self.screenshots.appendingPathComponent("\(page).png").path), "screenshot \(page)")
        }
    }
}
