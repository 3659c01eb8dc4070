import Foundation
import WorkerCore

/// The moment the process started, for `uptime` in `/health`.
public enum ProcessClock {
    private static let start = ContinuousClock.now

    /// Call early in `main` so uptime counts from start-up.
    public static func markStart() { _ = start }

    /// Seconds since start-up.
    public static var uptimeSeconds: Double { (ContinuousClock.now - start).inSeconds }
}
