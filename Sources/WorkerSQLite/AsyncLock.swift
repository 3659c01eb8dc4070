import Synchronization

/// A first-in-first-out lock for async code: one holder at a time, waiters resume in order.
///
/// The SQLite store shares one connection between concurrent tasks; holding this lock across
/// `BEGIN ... COMMIT` keeps other tasks' statements out of a transaction.
final class AsyncLock: Sendable {
    private struct State {
        var locked = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    init() {}

    func withLock<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        await acquire()
        defer { release() }
        return try await body()
    }

    private func acquire() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let acquired = state.withLock { state -> Bool in
                if state.locked {
                    state.waiters.append(continuation)
                    return false
                }
                state.locked = true
                return true
            }
            if acquired { continuation.resume() }
        }
    }

    private func release() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.waiters.isEmpty {
                state.locked = false
                return nil
            }
            // The lock passes straight to the next waiter.
            return state.waiters.removeFirst()
        }
        next?.resume()
    }
}
