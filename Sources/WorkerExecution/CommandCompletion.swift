import Synchronization

/// The end of a command's run, for waits that may give up first: a contender in the race
/// against the timeout and the limits, and the grace period of a stop.
///
/// The run itself is not a child of the job's task (``CommandHandler/execute``): cancelling the
/// job must reach the command as SIGTERM, with its output still read, not as a cancelled read.
/// So its end is awaited through this, and a wait ends early when the waiting task is cancelled.
final class CommandCompletion: Sendable {
    private struct State {
        var ended = false
        var nextWaiter: UInt64 = 0
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
    }

    private let state = Mutex(State())

    var hasEnded: Bool { state.withLock { $0.ended } }

    /// The run ended (with its result or its error).
    func end() {
        let waiters = state.withLock { state in
            state.ended = true
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns when the run has ended, or as soon as the calling task is cancelled.
    func wait() async {
        let id = state.withLock { state in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state in
                    guard !state.ended, !Task.isCancelled else { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
        }
    }

    /// Waits at most `limit` for the run to end, whether or not the calling task is cancelled
    /// (a stopped job's command still gets its grace); returns whether it ended.
    func wait(atMost limit: Duration) async -> Bool {
        // An unstructured task: the caller's cancellation must not cut the grace short.
        await Task {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await self.wait() }
                group.addTask { try? await Task.sleep(for: limit) }
                await group.next()
                group.cancelAll()
            }
            return self.hasEnded
        }.value
    }
}
