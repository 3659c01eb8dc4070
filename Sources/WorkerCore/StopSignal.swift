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
        var action: (@Sendable (StopReason) -> Void)?
    }

    private let state = Mutex(State())

    init() {}

    /// The reason, once triggered.
    var reason: StopReason? { state.withLock { $0.reason } }

    /// Triggers the signal; later triggers keep the first reason.
    func trigger(_ reason: StopReason) {
        let action = state.withLock { state -> (@Sendable (StopReason) -> Void)? in
            guard state.reason == nil else { return nil }
            state.reason = reason
            defer { state.action = nil }
            return state.action
        }
        action?(reason)
    }

    /// Runs `action` when the signal is triggered, or now if it already was. One action per
    /// signal (a job's handler task); a later call replaces an action not yet run.
    func onTrigger(_ action: @escaping @Sendable (StopReason) -> Void) {
        let reason = state.withLock { state -> StopReason? in
            if state.reason == nil { state.action = action }
            return state.reason
        }
        if let reason { action(reason) }
    }
}
