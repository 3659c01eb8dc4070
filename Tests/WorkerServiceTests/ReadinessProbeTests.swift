import Foundation
import Logging
import Synchronization
import Testing
import WorkerCore
import WorkerSQLite
import WorkerTestSupport
@testable import WorkerService

/// `/ready` on a real port, against a real SQLite store whose pings are counted (issue 13, item 10).
@Suite("readiness probe")
struct ReadinessProbeTests {
    /// Counts the store's pings, and how many ran at once.
    final class PingCounter: Sendable {
        private struct Counts { var total = 0, running = 0, maxRunning = 0 }
        private let counts = Mutex(Counts())

        var total: Int { counts.withLock { $0.total } }
        var maxRunning: Int { counts.withLock { $0.maxRunning } }

        /// Counts one ping around `ping`, after `delay` (a database that takes a while to answer).
        /// With `ignoringCancellation`, the wait goes on when the caller gives up, as a query on
        /// a dead connection does (PostgresNIO does not stop a query in flight).
        func measure(delay: Duration, ignoringCancellation: Bool = false, _ ping: @Sendable () async throws -> Void) async throws {
            counts.withLock {
                $0.total += 1
                $0.running += 1
                $0.maxRunning = max($0.maxRunning, $0.running)
            }
            defer { counts.withLock { $0.running -= 1 } }
            if ignoringCancellation {
                await Task { try? await Task.sleep(for: delay) }.value
            } else {
                try await Task.sleep(for: delay)
            }
            try await ping()
        }
    }

    static let logger = Logger(label: "readiness-test") { _ in SwiftLogNoOpLogHandler() }

    /// Runs a health server for `store` on a free port while `body` runs.
    func withHealthServer(store: any JobStore, _ body: @Sendable (_ port: Int) async throws -> Void) async throws {
        let port = try freeLocalPort()
        let probe = ReadinessProbe(checks: [.store(store)], logger: Self.logger)
        let server = HealthServer(host: "127.0.0.1", port: port, logger: Self.logger, readiness: probe)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run() }
            defer { group.cancelAll() }
            #expect(try await pollUntil { try await localGET(port: port, path: "/health").status == 200 })
            try await body(port)
        }
    }

    @Test("200 concurrent /ready requests share one store ping per second, never two at once")
    func concurrentRequestsShareOnePing() async throws {
        try await withTemporarySQLiteStore { base in
            let pings = PingCounter()
            let store = InstrumentedJobStore(base, aroundPing: { ping in try await pings.measure(delay: .milliseconds(100), ping) })
            try await withHealthServer(store: store) { port in
                let session = makeConcurrentSession(connections: 200)
                let start = ContinuousClock.now
                let responses = try await withThrowingTaskGroup(of: (status: Int, body: String).self) { group in
                    for _ in 0..<200 { group.addTask { try await localGET(port: port, path: "/ready", session: session) } }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
                let elapsed = ContinuousClock.now - start
                #expect(responses.count == 200)
                // Each answer reports a shared ping's verdict: "ok", or, on a machine so loaded
                // that the SQLite ping and its 100 ms took over a second (as in a full suite on
                // CI), the bound's message; never anything else.
                let verdicts = responses.map { (jsonObject($0.body)?["checks"] as? [String: String])?["store"] ?? "(none: \($0.status) \($0.body))" }
                let allowedVerdicts: Set = ["ok", "failing: the database did not answer within 1 s"]
                #expect(Set(verdicts).isSubset(of: allowedVerdicts), "\(Set(verdicts))")
                // One ping, plus at most one per further second the requests took to send.
                let allowed = 1 + Int((elapsed / .seconds(1)).rounded(.up))
                #expect(pings.total <= allowed, "\(pings.total) pings in \(elapsed) for 200 requests")
                #expect(pings.maxRunning == 1, "\(pings.maxRunning) pings at once")
            }
        }
    }

    @Test("a store that does not answer fails /ready after 1 s, and no second ping starts while the first hangs")
    func hangingStoreIsProbedOnce() async throws {
        try await withTemporarySQLiteStore { base in
            let pings = PingCounter()
            let store = InstrumentedJobStore(base, aroundPing: { ping in try await pings.measure(delay: .seconds(8), ignoringCancellation: true, ping) })
            try await withHealthServer(store: store) { port in
                let first = try await localGET(port: port, path: "/ready")
                #expect(first.status == 503)
                let checks = jsonObject(first.body)?["checks"] as? [String: String]
                #expect(checks?["store"] == "failing: the database did not answer within 1 s", "\(first.body)")
                // Past the cache interval, while the first ping still hangs.
                try await Task.sleep(for: .milliseconds(1500))
                let second = try await localGET(port: port, path: "/ready")
                #expect(second.status == 503)
                #expect(pings.total == 1, "\(pings.total) pings started; a hanging ping must not be joined by another")
            }
        }
    }

    @Test("claims failing one after another while the database answers SELECT 1: the processor check fails, and passes again once a claim does not")
    func failingClaimsMakeUnready() async throws {
        try await withTemporarySQLiteStore { sqlite in
            let failing = Atomic<Bool>(true)
            struct Refused: Error {}
            let store = InstrumentedJobStore(sqlite, beforeClaim: { if failing.load(ordering: .relaxed) { throw Refused() } })
            let processor = JobProcessor(
                store: store, handler: EchoHandler(),
                configuration: JobProcessorConfiguration(
                    workerID: "ready-test", maxConcurrentJobs: 1, pollInterval: .milliseconds(20), leaseDuration: .seconds(30),
                    shutdownTimeout: .seconds(2), retryPolicy: RetryPolicy(base: .milliseconds(20), maximum: .milliseconds(50), jitter: 0)),
                logger: Self.logger)
            let probe = ReadinessProbe(checks: [.processor(processor)], logger: Self.logger)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await processor.run() }
                defer { group.cancelAll() }
                // Before, "ok" whatever the claims did.
                let failed = try await pollUntil { await probe.evaluate()["processor"]??.contains("claims failed") == true }
                let checks = await probe.evaluate()
                #expect(failed, "\(checks)")
                // The database itself answers (asked without the store check's 1 s bound, which a
                // loaded CI run overran).
                try await store.ping()
                failing.store(false, ordering: .relaxed)
                let recovered = try await pollUntil { await probe.evaluate()["processor"] == .some(nil) }
                #expect(recovered)
            }
        }
    }

    @Test("a failing store answers 503 naming the check, without the database's error text")
    func failingStoreHidesErrorText() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("worker-ready-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let store = try await SQLiteJobStore.open(path: folder.appendingPathComponent("jobs.sqlite").path)
        try await store.migrate()
        try await store.close()
        // What the database says about it, which must not reach an HTTP client.
        let errorText: String
        do {
            try await store.ping()
            errorText = ""
        } catch {
            errorText = "\(error)"
        }
        #expect(!errorText.isEmpty, "a closed store's ping should fail")
        try await withHealthServer(store: store) { port in
            let response = try await localGET(port: port, path: "/ready")
            #expect(response.status == 503)
            #expect(!response.body.contains(errorText), "\(response.body)")
            let checks = jsonObject(response.body)?["checks"] as? [String: String]
            // The closed store's answer, or, when the suite keeps the thread pool busy past the
            // probe's 1 s, the timeout's (a full run failed so): either names the check only.
            let expected = ["failing: the database is unavailable (the worker logs why)", "failing: the database did not answer within 1 s"]
            #expect(expected.contains(checks?["store"] ?? ""), "\(response.body)")
        }
    }
}

func jsonObject(_ text: String) -> [String: Any]? {
    try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
}
