import Synchronization

/// A store call that did not answer in time.
public struct TimeoutError: Error, Sendable, CustomStringConvertible {
    public var operation: String
    public var timeout: Duration

    public init(operation: String, timeout: Duration) {
        self.operation = operation
        self.timeout = timeout
    }

    public var description: String { "\(operation) did not answer within \(timeout.inMilliseconds) ms" }
}

/// Runs `operation`, giving up after `timeout`: the caller gets ``TimeoutError`` and the
/// operation is left to finish by itself.
///
/// The operation runs in an unstructured `Task` on purpose: a database client can leave a call
/// hanging (a connection lost mid-query), and a structured child would hold its parent until it
/// returns. Here the caller moves on and the abandoned call ends whenever it ends.
public func withTimeout<T: Sendable>(
    _ timeout: Duration,
    operation name: String,
    _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
        let once = ResumeOnce(continuation)
        let timer = Task {
            try await Task.sleep(for: timeout)
            once.resume(with: .failure(TimeoutError(operation: name, timeout: timeout)))
        }
        Task {
            // Not cancelled on timeout: cancelling a database call mid-flight can leave its
            // connection in an unknown state; the abandoned call finishes (or fails) by itself.
            let result: Result<T, any Error>
            do { result = .success(try await operation()) } catch { result = .failure(error) }
            timer.cancel()
            once.resume(with: result)
        }
    }
}

/// Resumes a continuation with whichever result comes first.
private final class ResumeOnce<T: Sendable>: Sendable {
    private let continuation: Mutex<CheckedContinuation<T, any Error>?>

    init(_ continuation: CheckedContinuation<T, any Error>) {
        self.continuation = Mutex(continuation)
    }

    /// Returns `true` if this call resumed the continuation.
    @discardableResult
    func resume(with result: Result<T, any Error>) -> Bool {
        guard let continuation = continuation.withLock({ current in
            defer { current = nil }
            return current
        }) else { return false }
        continuation.resume(with: result)
        return true
    }
}
