import Synchronization
import Testing
import WorkerCore

@Suite("withTimeout")
struct TimeoutTests {
    @Test("returns the result of a fast operation and throws TimeoutError for a hung one")
    func timeout() async throws {
        #expect(try await withTimeout(.seconds(5), operation: "fast") { 42 } == 42)
        let clock = ContinuousClock()
        let start = clock.now
        await #expect(throws: TimeoutError.self) {
            _ = try await withTimeout(.milliseconds(100), operation: "hung") {
                // Ignores cancellation, like a call stuck on a dead connection.
                await withCheckedContinuation { (_: CheckedContinuation<Void, Never>) in }
            }
        }
        #expect(clock.now - start < .seconds(2))
    }

    @Test("an operation's error passes through")
    func errors() async {
        await #expect(throws: CancellationError.self) {
            try await withTimeout(.seconds(5), operation: "failing") { throw CancellationError() }
        }
    }

    @Test("the operation sees its deadline; on time-out it is cancelled, so a store call waiting for a connection is never sent")
    func cancelsOnTimeout() async throws {
        let sawDeadline = Atomic<Bool>(false)
        let cancelled = Atomic<Bool>(false)
        await #expect(throws: TimeoutError.self) {
            try await withTimeout(.milliseconds(100), operation: "test") {
                sawDeadline.store(StoreDeadline.current != nil, ordering: .relaxed)
                do {
                    try await Task.sleep(for: .seconds(10))
                } catch {
                    cancelled.store(true, ordering: .relaxed)
                }
            }
        }
        try await Task.sleep(for: .milliseconds(200))
        let (deadlineSeen, wasCancelled) = (sawDeadline.load(ordering: .relaxed), cancelled.load(ordering: .relaxed))
        #expect(deadlineSeen)
        #expect(wasCancelled, "the abandoned operation was left running")
    }

    @Test("a statement bounded on the server is not sent when its answer could come after the caller's deadline")
    func ensureTime() async throws {
        try StoreDeadline.ensureTime(for: .seconds(100), operation: "no deadline: a CLI call")
        // A deadline far off, so that a loaded machine cannot make "fits" come too late.
        try await withTimeout(.seconds(60), operation: "test") {
            try StoreDeadline.ensureTime(for: .seconds(2), operation: "fits")
            #expect(throws: TimeoutError.self) { try StoreDeadline.ensureTime(for: .seconds(59.5), operation: "too late") }
        }
    }
}

extension TimeoutTests {
    @Test("a caller cancelled while it waits gets CancellationError at once, and the operation is cancelled too")
    func callerCancelled() async throws {
        let operationCancelled = Atomic<Bool>(false)
        let clock = ContinuousClock()
        let start = clock.now
        let caller = Task {
            try await withTimeout(.seconds(30), operation: "statistics") {
                do { try await Task.sleep(for: .seconds(30)) } catch { operationCancelled.store(true, ordering: .relaxed) }
            }
        }
        try await Task.sleep(for: .milliseconds(100))
        caller.cancel()
        await #expect(throws: CancellationError.self) { try await caller.value }
        #expect(clock.now - start < .seconds(5), "the caller waited out the timeout")
        for _ in 0..<100 where !operationCancelled.load(ordering: .relaxed) { try await Task.sleep(for: .milliseconds(10)) }
        let cancelled = operationCancelled.load(ordering: .relaxed)
        #expect(cancelled)
    }
}
