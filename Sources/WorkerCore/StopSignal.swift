import Synchronization

/// Why the processor stops a running job before its handler returns.
enum StopReason: Sendable, Hashable {
    /// Shutdown ran out of time: give the job back.
    case shutdown
    /// An operator cancelled the job.
    case cancelled
    /// Another worker owns the job now.
    case leaseLost
}

/// A one-shot signal carrying the first ``StopReason`` it was triggered with.
final class StopSignal: Sendable {
    private struct State {
        var reason: StopReason?
        var waiters: [CheckedContinuation<StopReason?, Never>] = []
    }

    private let state = Mutex(State())

    init() {}

    /// The reason, once triggered.
    var reason: StopReason? { state.withLock { $0.reason } }

    /// Triggers the signal; later triggers keep the first reason.
    func trigger(_ reason: StopReason) {
        let waiters = state.withLock { state -> [CheckedContinuation<StopReason?, Never>] in
            guard state.reason == nil else { return [] }
            state.reason = reason
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(returning: reason) }
    }

    /// Waits for the trigger; returns `nil` if the waiting task is cancelled first.
    func wait() async -> StopReason? {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<StopReason?, Never>) in
                let immediate = state.withLock { state -> StopReason?? in
                    if let reason = state.reason { return .some(reason) }
                    if Task.isCancelled { return .some(nil) }
                    state.waiters.append(continuation)
                    return .none
                }
                if let immediate { continuation.resume(returning: immediate) }
            }
        } onCancel: {
            let waiters = state.withLock { state -> [CheckedContinuation<StopReason?, Never>] in
                defer { state.waiters = [] }
                return state.waiters
            }
            for waiter in waiters { waiter.resume(returning: nil) }
        }
    }
}
