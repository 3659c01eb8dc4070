import Foundation

/// How many jobs finished within one interval of time: a bar of the dashboard's chart of the
/// last hour (``JobStore/finishedTimeline(window:interval:)``).
public struct FinishedInterval: Sendable, Hashable {
    /// The start of the interval (a multiple of its length since 1970, by the database's clock).
    public var start: Date
    public var completed: Int
    public var failed: Int

    public init(start: Date, completed: Int, failed: Int) {
        self.start = start
        self.completed = completed
        self.failed = failed
    }
}
