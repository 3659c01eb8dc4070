import Hummingbird
import NIOCore

/// The request context of the worker's HTTP server: Hummingbird's basic one, plus the peer's
/// address (while `API_TOKEN` is unset the job API and the dashboard answer only this machine's
/// own requests: ``LoopbackAccess``).
public struct WorkerRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: SocketAddress?
    /// The request's connection: an event stream watches it for its client's going
    /// (``ClientHangUp``).
    let channel: any Channel
    /// Who is calling the job API (set by ``APIToken``).
    var caller: APICaller?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
        channel = source.channel
    }
}
