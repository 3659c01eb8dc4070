/// Errors of the PostgreSQL store.
public enum PostgresJobStoreError: Error, CustomStringConvertible {
    case invalidIdentifier(variable: String, value: String, maxLength: Int)
    case notificationsEnded
    /// The LISTEN connection did not answer its heartbeat within this long: it was closed.
    case notificationsStalled(Duration)
    /// The database refused or could not be reached; the text says why.
    case database(String)

    public var description: String {
        switch self {
        case .invalidIdentifier(let variable, let value, let maxLength):
            "invalid configuration: \(variable)=\(value) is not valid; expected letters, digits and _ (at most \(maxLength)), not starting with a digit"
        case .notificationsEnded:
            "the notification connection closed"
        case .notificationsStalled(let wait):
            "the notification connection did not answer its heartbeat within \(wait.inMilliseconds) ms (a connection dropped without a reset, e.g. by a NAT or a failover); it was closed"
        case .database(let message):
            message
        }
    }
}
