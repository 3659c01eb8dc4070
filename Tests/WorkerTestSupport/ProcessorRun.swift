import Logging
import ServiceLifecycle
import Testing
import WorkerCore

/// Runs `processor` in a service group while `body` runs, then shuts the group down gracefully.
public func whileRunning<T: Sendable>(_ processor: JobProcessor, _ body: () async throws -> T) async throws -> T {
    let group = ServiceGroup(configuration: ServiceGroupConfiguration(services: [processor], logger: Logger(label: "test")))
    return try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        let result: T
        do {
            result = try await body()
        } catch {
            await group.triggerGracefulShutdown()
            throw error
        }
        await group.triggerGracefulShutdown()
        try await tasks.waitForAll()
        return result
    }
}

/// Polls `condition` every 20 ms until it holds; records an issue (and returns `false`) after `timeout`.
@discardableResult
public func waitUntil(
    timeout: Duration = .seconds(10), sourceLocation: SourceLocation = #_sourceLocation, _ condition: () async throws -> Bool
) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(20))
    }
    Issue.record("condition not met within \(timeout)", sourceLocation: sourceLocation)
    return false
}
