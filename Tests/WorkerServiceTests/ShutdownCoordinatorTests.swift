import Foundation
import Logging
import ServiceLifecycle
import Testing
import WorkerCore
import WorkerTestSupport
@testable import WorkerService

@Suite("shutdown coordinator")
struct ShutdownCoordinatorTests {
    /// A service that takes a while to stop once told to, as the HTTP server and the monitor
    /// may: the group stops the services listed after the processor first.
    struct SlowToStop: Service {
        func run() async throws {
            try? await gracefulShutdown()
            try? await Task.sleep(for: .seconds(1))
        }
    }

    @Test("a signal during start-up, before the service group is handed over: once the group runs, the processor claims nothing while the other services stop")
    func signalBeforeRegistration() async throws {
        try await withTemporarySQLiteStore { store in
            let id = try await store.enqueue([NewJob(prompt: "p")])[0]
            let coordinator = ShutdownCoordinator(logger: Logger(label: "test"))
            await coordinator.requestShutdown()
            let processor = JobProcessor(
                store: store, handler: EchoHandler(), configuration: JobProcessorConfiguration(workerID: "w", pollInterval: .milliseconds(50)),
                logger: Logger(label: "test"))
            let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: [processor, SlowToStop()], logger: Logger(label: "test")))
            await coordinator.register(group: group, processor: processor)
            try await group.run()
            let job = try #require(try await store.job(id: id))
            // Before: the processor claimed and ran the job while the group stopped the service after it.
            #expect(job.status == .pending && job.attempts == 0, "\(job.status) after \(job.attempts) attempts")
        }
    }
}
