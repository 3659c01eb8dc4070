/// Failures of the service as a whole, each with a message a user can act on.
public enum WorkerServiceError: Error, Sendable, CustomStringConvertible {
    /// The health port is taken by another process.
    case portInUse(host: String, port: Int)
    /// The health server could not bind for another reason.
    case cannotListen(host: String, port: Int, reason: String)
    /// `worker dashboard`'s port (`--port`) is taken by another process.
    case dashboardPortInUse(host: String, port: Int)
    /// The schema migration at start-up was refused for a reason that retrying does not mend.
    case migrationRefused(String)

    public var description: String {
        switch self {
        case .portInUse(let host, let port):
            "HEALTH_CHECK_PORT \(port) on \(host) is already in use by another process; stop it or set HEALTH_CHECK_PORT to a free port"
        case .dashboardPortInUse(let host, let port):
            "port \(port) on \(host) is already in use by another process; stop it or give the dashboard another one (--port)"
        case .migrationRefused(let reason):
            "the schema migration was refused: \(reason). Fix what it names (`worker migrate` shows the same error) and start the worker again"
        case .cannotListen(let host, let port, let reason):
            "cannot listen on HEALTH_CHECK_HOST \(host), HEALTH_CHECK_PORT \(port): \(reason)"
        }
    }
}
