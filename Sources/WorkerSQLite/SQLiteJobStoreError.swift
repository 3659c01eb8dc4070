/// Errors opening the SQLite store.
public enum SQLiteJobStoreError: Error, CustomStringConvertible {
    case invalidTableName(String)
    case cannotOpen(path: String, reason: String)

    public var description: String {
        switch self {
        case .invalidTableName(let name):
            "invalid table name \"\(name)\": use letters, digits and _ (at most 63), not starting with a digit"
        case .cannotOpen(let path, let reason):
            "cannot open SQLite database \(path): \(reason)"
        }
    }
}

