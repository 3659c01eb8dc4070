/// Errors of the PostgreSQL store.
public enum PostgresJobStoreError: Error, CustomStringConvertible {
    case invalidIdentifier(variable: String, value: String, maxLength: Int)
    case notificationsEnded
    /// The LISTEN connection did not answer its heartbeat within this long: it was closed.
    case notificationsStalled(Duration)
    /// The database refused or could not be reached; the text says why, and the SQLSTATE the
    /// server answered with, if it answered.
    case database(String, sqlState: String? = nil)

    public var description: String {
        switch self {
        case .invalidIdentifier(let variable, let value, let maxLength):
            "invalid configuration: \(variable)=\(value) is not valid; expected letters, digits and _ (at most \(maxLength)), not starting with a digit"
        case .notificationsEnded:
            "the notification connection closed"
        case .notificationsStalled(let wait):
            "the notification connection did not answer its heartbeat within \(wait.inMilliseconds) ms (a connection dropped without a reset, e.g. by a NAT or a failover); it was closed"
        case .database(let message, _):
            message
        }
    }
}

extension PostgresJobStoreError {
    /// Whether the server refused the request for what it is (a name taken by another object, a
    /// view that depends on a column, a function the server lacks), which asking again does not
    /// mend; `false` for what passes (the connection, a restart, a lock, a deadlock, a full disk)
    /// and for an error with no SQLSTATE (no answer at all).
    public var isLastingRefusal: Bool {
        guard case .database(_, let state?) = self, state.count == 5 else { return false }
        // 08 connection, 25 transaction state (idle timeouts), 40 rollback (serialization,
        // deadlock), 53 resources, 55 object state (locks), 57 operator intervention (shutdown,
        // start-up, cancel), 58 system (I/O), XX internal (a pooler's passing errors).
        let passing: Set<Substring> = ["08", "25", "40", "53", "55", "57", "58", "XX"]
        return !passing.contains(state.prefix(2))
    }
}
