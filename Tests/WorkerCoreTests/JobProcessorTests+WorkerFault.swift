import Foundation
import Logging
import Synchronization
import Testing
import WorkerCore
import WorkerTestSupport

/// Jobs this worker cannot run at all (a full disk, a program that cannot start): not the jobs'
/// fault, so no attempt is used, and the worker steps aside.
extension JobProcessorTests {
    struct CannotRunHere: WorkerFaultError, CustomStringConvertible {
        var isWorkerFault: Bool { true }
        var description: String { "cannot prepare the working directory /jobs/x: No space left on device" }
    }

    /// Fails every job as this worker's fault while `broken` is set, then completes them.
    final class BrokenWorker: JobHandler {
        let broken = Atomic<Bool>(true)
        let calls = Atomic<Int>(0)

        func handle(_ job: ClaimedJob, context: JobContext) async throws -> String {
            calls.add(1, ordering: .relaxed)
            if broken.load(ordering: .relaxed) { throw CannotRunHere() }
            return #"{"ok":true}"#
        }
    }

    @Test("jobs this worker cannot run go back to the queue with no attempt used; after three it pauses its claims and reports why, then tries one job and goes on")
    func workerFaultReleasesAndPauses() async throws {
        try await withTemporarySQLiteStore { store in
            let ids = try await store.enqueue((0..<6).map { NewJob(prompt: "j\($0)", maxAttempts: 1) })
            let handler = BrokenWorker()
            var configuration = Self.configuration(maxConcurrent: 1, poll: .milliseconds(20))
            configuration.workerFaultPause = .seconds(6)
            let processor = JobProcessor(store: store, handler: handler, configuration: configuration, logger: Logger(label: "test"))
            try await Self.running(processor) {
                try await Self.waitUntil { processor.workerFault != nil }
                let fault = try #require(processor.workerFault)
                #expect(fault.count >= JobProcessor.workerFaultsMakingUnready && fault.error.contains("No space left"), "\(fault)")
                // Every job back in the queue, none with an attempt used (before, every job failed
                // for good within milliseconds: max_attempts is 1). A job claimed as the third
                // fault was being counted goes back too.
                try await Self.waitUntil {
                    try await store.jobs(matching: JobFilter()).allSatisfy { $0.status == .pending && $0.attempts == 0 }
                }
                // Paused: no more jobs taken while it lasts.
                let calls = handler.calls.load(ordering: .relaxed)
                try await Task.sleep(for: .milliseconds(500))
                #expect(handler.calls.load(ordering: .relaxed) == calls, "claimed while paused")
                let events = try await store.events(jobID: ids[0], after: 0, limit: 10)
                #expect(events.last.map { $0.data.contains(#""released""#) && $0.data.contains(#""worker_fault""#) } == true, "\(events.map(\.data))")
                // Repaired: after the pause it tries one job, which runs, and goes on.
                handler.broken.store(false, ordering: .relaxed)
                try await Self.waitUntil { try await store.stats().completed == 6 }
                #expect(processor.workerFault == nil)
            }
        }
    }
}
