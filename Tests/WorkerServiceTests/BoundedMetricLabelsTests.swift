import Foundation
import Logging
import Testing
import WorkerCore
import WorkerTestSupport
@testable import WorkerService

/// The `queue` labels on `/metrics` stay bounded however many queues the table holds (issue 13,
/// item 9): depth series for the served queues, the 50 deepest others and `queue="other"` for the
/// rest; per-job counters only for the served queues (and `other`). Reads the process's real
/// Prometheus registry.
@Suite("bounded metric labels", .serialized)
struct BoundedMetricLabelsTests {
    static let logger = Logger(label: "queue-depth-test") { _ in SwiftLogNoOpLogHandler() }
    static let served = ["default", "q000"]

    /// `queue` label -> `status` label -> value of `worker_queue_jobs`, and the queue labels of
    /// `worker_queue_oldest_pending_age_seconds`, from the Prometheus text the process serves.
    struct DepthSeries {
        var jobs: [String: [String: Double]] = [:]
        var ageQueues: Set<String> = []

        init(_ text: String) {
            for line in text.split(separator: "\n") where !line.hasPrefix("#") {
                guard let open = line.firstIndex(of: "{"), let close = line.lastIndex(of: "}"),
                      let value = Double(line[line.index(after: close)...].trimmingCharacters(in: .whitespaces)) else { continue }
                let name = line[..<open]
                var labels: [String: String] = [:]
                for pair in line[line.index(after: open)..<close].split(separator: ",") {
                    let parts = pair.split(separator: "=", maxSplits: 1)
                    guard parts.count == 2 else { continue }
                    labels[String(parts[0])] = parts[1].trimmingCharacters(in: CharacterSet(charactersIn: "\""))
                }
                guard let queue = labels["queue"] else { continue }
                if name == "worker_queue_jobs", let status = labels["status"] {
                    jobs[queue, default: [:]][status] = value
                } else if name == "worker_queue_oldest_pending_age_seconds" {
                    ageQueues.insert(queue)
                }
            }
        }
    }

    static func queueName(_ index: Int) -> String { "q" + String(index + 1000).dropFirst() }

    /// Runs a real queue monitor on `store` until the served text satisfies `done`, then stops it
    /// (so that the assertions read one complete report) and returns the parsed series.
    func report(_ store: any JobStore, until done: @escaping @Sendable (DepthSeries) -> Bool) async throws -> DepthSeries {
        let registry = MetricsSetup.registry
        let monitor = QueueMonitor(store: store, interval: .milliseconds(100), servedQueues: Self.served, logger: Self.logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await monitor.run() }
            let reached = try await pollUntil(timeout: .seconds(15)) { done(DepthSeries(registry.emitToString())) }
            #expect(reached, "the monitor's report never reached the expected shape")
            group.cancelAll()
            try await group.waitForAll()
        }
        return DepthSeries(registry.emitToString())
    }

    @Test("120 queues: served + the 50 deepest + other; queues that leave the stats or the top 50 lose their series")
    func boundedDepthSeries() async throws {
        try await withTemporarySQLiteStore { store in
            // Queue i holds i + 1 pending jobs: q119 is the deepest, q000 (served) the shallowest.
            var ids: [String: [UUID]] = [:]
            for index in 0..<120 {
                let queue = Self.queueName(index)
                ids[queue] = try await store.enqueue((0...index).map { _ in NewJob(prompt: "x", queue: queue) })
            }
            let first = try await report(store) { $0.jobs["q119"]?["pending"] == 120 && $0.jobs["q001"] == nil }
            let expected = Set(Self.served + (70..<120).map(Self.queueName) + ["other"])
            #expect(Set(first.jobs.keys) == expected)
            #expect(first.jobs.count <= 50 + Self.served.count + 1)
            #expect(first.ageQueues == expected)
            // q001...q069 hold 2...70 jobs.
            #expect(first.jobs["other"]?["pending"] == Double((2...70).reduce(0, +)))
            #expect(first.jobs["other"]?["completed"] == 0)
            #expect(first.jobs["q000"]?["pending"] == 1)
            #expect(first.jobs["default"]?["pending"] == 0)

            // The ten deepest queues empty out: cancelled, then deleted.
            for index in 110..<120 {
                for id in ids[Self.queueName(index)]! { _ = try await store.cancel(id: id) }
            }
            try await Task.sleep(for: .milliseconds(5))
            let deleted = try await store.deleteFinished(status: .cancelled, olderThan: .zero, limit: 10_000)
            #expect(deleted == (111...120).reduce(0, +))

            let second = try await report(store) { $0.jobs["q119"] == nil && $0.jobs["q060"] != nil }
            let expectedAfter = Set(Self.served + (60..<110).map(Self.queueName) + ["other"])
            #expect(Set(second.jobs.keys) == expectedAfter)
            #expect(second.ageQueues == expectedAfter)
            #expect(second.jobs["other"]?["pending"] == Double((2...60).reduce(0, +)))
            for index in 110..<120 {
                #expect(second.jobs[Self.queueName(index)] == nil)
            }
        }
    }

    @Test("a rescued job of a queue this worker does not serve is counted under queue=\"other\"")
    func rescuedForeignQueue() async throws {
        let registry = MetricsSetup.registry
        try await withTemporarySQLiteStore { store in
            let foreign = "foreign-\(UUID().uuidString.prefix(8))"
            let id = try await store.enqueue([NewJob(prompt: "x", queue: foreign)])[0]
            // A worker that died holding it: its lease runs out at once.
            _ = try await store.claim(queues: [foreign], limit: 1, workerID: "dead-worker", leaseDuration: .milliseconds(1))
            let before = Self.counterValue(registry.emitToString(), #"worker_jobs_rescued_total{queue="other"}"#)
            let processor = JobProcessor(
                store: store,
                handler: EchoHandler(),
                configuration: JobProcessorConfiguration(workerID: "rescuer", queues: ["served-only"], pollInterval: .milliseconds(50), rescueInterval: .milliseconds(50)),
                logger: Self.logger
            )
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await processor.run() }
                #expect(try await pollUntil { try await store.job(id: id)?.status == .pending }, "the expired lease was never rescued")
                group.cancelAll()
                try await group.waitForAll()
            }
            let text = registry.emitToString()
            #expect(!text.contains(foreign), "a queue this worker does not serve became a label")
            #expect(Self.counterValue(text, #"worker_jobs_rescued_total{queue="other"}"#) == before + 1)
        }
    }

    /// The value of the sample `series` (name and labels as printed), 0 when absent.
    static func counterValue(_ text: String, _ series: String) -> Double {
        for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1)) ?? 0
        }
        return 0
    }
}
