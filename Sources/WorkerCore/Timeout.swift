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

/// The moment the caller of the current store call gives up on it (set by ``withTimeout(_:operation:_:)``).
///
/// A call the worker gave up on must not take effect later: a claim that ran after its caller
/// moved on would take jobs that nobody runs. So a driver bounds every statement on the server
/// too (PostgreSQL's `statement_timeout`, SQLite's busy timeout) and, before it sends a
/// statement that changes jobs, checks with ``ensureTime(for:operation:)`` that the answer can
/// still arrive before this deadline; otherwise it does not send it at all.
public enum StoreDeadline {
    @TaskLocal public static var current: ContinuousClock.Instant?

    /// The margin kept between the server's bound and the caller's deadline, for the answer's
    /// way back.
    public static let margin = Duration.seconds(1)

    /// Throws ``TimeoutError`` unless a statement bounded by `serverBound` on the server can
    /// answer (with its result or its timeout) before the current deadline; `Task` cancellation
    /// (the caller gave up) throws too. Without a deadline (a CLI command), it returns.
    public static func ensureTime(for serverBound: Duration, operation: String) throws {
        if Task.isCancelled { throw TimeoutError(operation: operation, timeout: .zero) }
        guard let deadline = current else { return }
        let left = deadline - .now
        if left < serverBound + margin {
            throw TimeoutError(operation: operation, timeout: max(left, .zero))
        }
    }
}

/// Runs `operation`, giving up after `timeout`: the caller gets ``TimeoutError``.
///
/// The operation runs in an unstructured `Task` on purpose: a database client can leave a call
/// hanging (a connection lost mid-query), and a structured child would hold its parent until it
/// returns. Here the caller moves on. On time-out the operation's task is cancelled: a call
/// still waiting for a connection gives up (PostgresNIO's pool and the drivers check for it),
/// while a statement already on the server ends by the server's own bound (``StoreDeadline``).
/// The operation sees its deadline as ``StoreDeadline/current``.
///
/// A caller cancelled meanwhile (a service told to stop) gets `CancellationError` at once, and
/// the operation is cancelled too: before, the caller waited out the whole timeout (a queue
/// statistics call held up the worker's shutdown for up to 30 s while it went on claiming).
public func withTimeout<T: Sendable>(
    _ timeout: Duration,
    operation name: String,
    _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    let deadline = ContinuousClock.now + timeout
    let once = ResumeOnce<T>()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            once.attach(continuation)
            let timer = Task {
                try await Task.sleep(until: deadline)
                once.fail(TimeoutError(operation: name, timeout: timeout))
            }
            once.register(Task {
                let result: Result<T, any Error>
                do {
                    result = .success(try await StoreDeadline.$current.withValue(deadline) { try await operation() })
                } catch {
                    result = .failure(error)
                }
                timer.cancel()
                once.resume(with: result)
            })
        }
    } onCancel: {
        once.fail(CancellationError())
    }
}

/// Resumes a continuation with whichever result comes first; a time-out (or the caller's
/// cancellation) also cancels the work.
private final class ResumeOnce<T: Sendable>: Sendable {
    private struct State {
        var continuation: CheckedContinuation<T, any Error>?
        var work: Task<Void, Never>?
        /// Why the call ended before its result, if it did (also before the continuation came).
        var failure: (any Error)?
    }

    private let state = Mutex(State())

    /// The caller's continuation; resumed at once if the call has failed already.
    func attach(_ continuation: CheckedContinuation<T, any Error>) {
        let failure = state.withLock { state -> (any Error)? in
            if state.failure == nil { state.continuation = continuation }
            return state.failure
        }
        if let failure { continuation.resume(throwing: failure) }
    }

    /// The task doing the work, cancelled if the call failed first (also before this call).
    func register(_ work: Task<Void, Never>) {
        let cancel = state.withLock { state -> Bool in
            state.work = work
            return state.failure != nil
        }
        if cancel { work.cancel() }
    }

    func fail(_ error: any Error) {
        let (continuation, work) = state.withLock { state -> (CheckedContinuation<T, any Error>?, Task<Void, Never>?) in
            guard state.failure == nil else { return (nil, nil) }
            state.failure = error
            defer { state.continuation = nil }
            return (state.continuation, state.work)
        }
        work?.cancel()
        continuation?.resume(throwing: error)
    }

    func resume(with result: Result<T, any Error>) {
        let continuation = state.withLock { state in
            defer { state.continuation = nil; state.work = nil }
            return state.continuation
        }
        continuation?.resume(with: result)
    }
}
