/// Errors of the PostgreSQL store.
public enum PostgresJobStoreError: Error, CustomStringConvertible {
    case invalidIdentifier(variable: String, value: String, maxLength: Int)
    case notificationsEnded
    /// The database refused or could not be reached; the text says why.
    case database(String)

    public var description: String {
        switch self {
        case .invalidIdentifier(let variable, let value, let maxLength):
            "invalid configuration: \(variable)=\(value) is not valid; expected letters, digits and _ (at most \(maxLength)), not starting with a digit"
        case .notificationsEnded:
            "the notification connection closed"
        case .database(let message):
            message
        }
    }
}
