/// A read-only command found no SQLite database where the configuration points.
///
/// Opening the store would create and migrate an empty file, and the command would then report
/// an empty queue: a wrong working directory or a forgotten `DATABASE_URL` would look like "no jobs".
struct NoDatabase: Error, CustomStringConvertible {
    var path: String

    var description: String {
        "no database at \(path): start the worker (`worker run`) or run `worker migrate` to create it here, "
            + "or set DATABASE_URL to the database to use (e.g. sqlite:/path/to/worker.sqlite or postgres://...)"
    }
}
