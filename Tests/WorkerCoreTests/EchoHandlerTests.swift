import Foundation
import Logging
import Testing
@testable import WorkerCore

@Suite("EchoHandler")
struct EchoHandlerTests {
    static func claimed(prompt: String, payload: String, attempt: Int) -> ClaimedJob {
        let job = Job(id: UUID(), prompt: prompt, payload: payload, status: .processing, runAt: Date(), attempts: attempt, createdAt: Date())
        return ClaimedJob(job: job, lease: Lease(jobID: job.id, workerID: "w", attempt: attempt, expiresAt: Date()))
    }

    let context = JobContext(logger: Logger(label: "test"), workerID: "w")

    @Test("echoes the prompt as JSON, escaping what JSON needs")
    func echoes() async throws {
        let result = try await EchoHandler().handle(Self.claimed(prompt: "say \"hi\"\n/ü", payload: "{}", attempt: 1), context: context)
        let object = try JSONSerialization.jsonObject(with: Data(result.utf8)) as? [String: String]
        #expect(object == ["echo": "say \"hi\"\n/ü"])
    }

    @Test("failTimes fails the first attempts only")
    func failTimes() async throws {
        let handler = EchoHandler()
        await #expect(throws: EchoHandlerError.self) {
            _ = try await handler.handle(Self.claimed(prompt: "p", payload: #"{"failTimes":2}"#, attempt: 2), context: context)
        }
        _ = try await handler.handle(Self.claimed(prompt: "p", payload: #"{"failTimes":2}"#, attempt: 3), context: context)
    }

    @Test("sleepMs waits, and cancellation ends the wait")
    func sleepIsCancellable() async throws {
        let clock = ContinuousClock()
        let start = clock.now
        _ = try await EchoHandler().handle(Self.claimed(prompt: "p", payload: #"{"sleepMs":120}"#, attempt: 1), context: context)
        #expect(clock.now - start >= .milliseconds(120))
        let task = Task { try await EchoHandler().handle(Self.claimed(prompt: "p", payload: #"{"sleepMs":60000}"#, attempt: 1), context: context) }
        try await Task.sleep(for: .milliseconds(50))
        task.cancel()
        await #expect(throws: CancellationError.self) { _ = try await task.value }
    }

    @Test("malformed options fail the attempt with a clear error")
    func malformedOptions() async throws {
        await #expect(throws: EchoHandlerError.self) {
            _ = try await EchoHandler().handle(Self.claimed(prompt: "p", payload: #"{"sleepMs":"soon"}"#, attempt: 1), context: context)
        }
    }
}
