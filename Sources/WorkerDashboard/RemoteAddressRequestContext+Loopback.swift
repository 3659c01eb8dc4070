import Hummingbird

extension RemoteAddressRequestContext {
    /// Whether the peer is this machine (127.0.0.0/8, ::1, or IPv4-mapped 127.x): the first of
    /// ``LoopbackAccess``'s conditions for a request without `API_TOKEN`.
    public var isLoopbackPeer: Bool {
        guard let address = remoteAddress?.ipAddress else { return false }
        return address.hasPrefix("127.") || address == "::1" || address.hasPrefix("::ffff:127.")
    }
}
