import Hummingbird
import NIOCore

/// The request context of the worker's HTTP server: Hummingbird's basic one, plus the peer's
/// address (the job API answers only loopback peers while `API_TOKEN` is unset:
/// `isLoopbackPeer`, which the dashboard's gate shares).
public struct WorkerRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: SocketAddress?
    /// Who is calling the job API (set by ``APIToken``).
    var caller: APICaller?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
    }
}
