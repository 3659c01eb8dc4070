import Synchronization

/// Why the processor stops a running job before its handler returns.
enum StopReason: Sendable, Hashable {
    /// Shutdown ran out of time: give the job back.
    case shutdown
    /// An operator cancelled the job.
    case cancelled
    /// Another worker owns the job now.
    case leaseLost
    /// Events of the attempt were lost in a database failure (``RefusedEvents/brokenStreams``):
    /// nothing more of it can be stored without a gap, so it is given up to the rescue.
    case eventsLost
}

/// A one-shot signal carrying the first ``StopReason`` it was triggered with; triggering it
/// cancels the job's task.
final class StopSignal: Sendable {
    private struct State {
        var reason: StopReason?
        var task: Task<Void, Never>?
    }

    private let state = Mutex(State())

    init() {}

    /// The reason, once triggered.
    var reason: StopReason? { state.withLock { $0.reason } }

    /// Triggers the signal (cancelling the job's task); later triggers keep the first reason.
    func trigger(_ reason: StopReason) {
        let task = state.withLock { state -> Task<Void, Never>? in
            guard state.reason == nil else { return nil }
            state.reason = reason
            defer { state.task = nil }
            return state.task
        }
        task?.cancel()
    }

    /// The job's task, cancelled when the signal is triggered, or now if it already was.
    func cancels(_ task: Task<Void, Never>) {
        let triggered = state.withLock { state -> Bool in
            if state.reason == nil { state.task = task }
            return state.reason != nil
        }
        if triggered { task.cancel() }
    }
}
