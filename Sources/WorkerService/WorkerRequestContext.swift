import Hummingbird
import NIOCore

/// The request context of the worker's HTTP server: Hummingbird's basic one, plus the peer's
/// address (the job API answers only loopback peers while `API_TOKEN` is unset).
public struct WorkerRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: SocketAddress?
    /// Who is calling the job API (set by ``APIToken``).
    var caller: APICaller?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
    }

    /// Whether the peer is this machine (127.0.0.0/8, ::1, or IPv4-mapped 127.x).
    var isLoopbackPeer: Bool {
        guard let address = remoteAddress?.ipAddress else { return false }
        return address.hasPrefix("127.") || address == "::1" || address.hasPrefix("::ffff:127.")
    }
}
