/// Failures of the service as a whole, each with a message a user can act on.
public enum WorkerServiceError: Error, Sendable, CustomStringConvertible {
    /// The health port is taken by another process.
    case portInUse(host: String, port: Int)
    /// The health server could not bind for another reason.
    case cannotListen(host: String, port: Int, reason: String)
    /// `worker dashboard`'s port (`--port`) is taken by another process.
    case dashboardPortInUse(host: String, port: Int)

    public var description: String {
        switch self {
        case .portInUse(let host, let port):
            "HEALTH_CHECK_PORT \(port) on \(host) is already in use by another process; stop it or set HEALTH_CHECK_PORT to a free port"
        case .dashboardPortInUse(let host, let port):
            "port \(port) on \(host) is already in use by another process; stop it or give the dashboard another one (--port)"
        case .cannotListen(let host, let port, let reason):
            "cannot listen on HEALTH_CHECK_HOST \(host), HEALTH_CHECK_PORT \(port): \(reason)"
        }
    }
}
