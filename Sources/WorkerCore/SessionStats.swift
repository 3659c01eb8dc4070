/// What the sessions of the table are doing (`worker stats`, the monitor's gauges).
public struct SessionStats: Sendable, Hashable, Codable {
    /// Sessions with a turn running now.
    public var running = 0
    /// Sessions with turns waiting for an earlier turn to finish.
    public var waiting = 0
    /// Turns waiting for an earlier turn of their session (pending, and held back by it).
    public var waitingTurns = 0
    /// Sessions held by a turn that failed for good (`SESSION_ON_FAILURE=block`).
    public var blocked = 0
    /// Seconds the longest-waiting turn has been due while only its session held it back;
    /// `nil` when no due turn waits.
    public var oldestWaitSeconds: Double?

    public init(running: Int = 0, waiting: Int = 0, waitingTurns: Int = 0, blocked: Int = 0, oldestWaitSeconds: Double? = nil) {
        self.running = running
        self.waiting = waiting
        self.waitingTurns = waitingTurns
        self.blocked = blocked
        self.oldestWaitSeconds = oldestWaitSeconds
    }
}
