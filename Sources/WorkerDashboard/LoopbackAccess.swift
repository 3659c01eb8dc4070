import HTTPTypes
import Hummingbird

/// Who the job API and the dashboard let in while `API_TOKEN` is unset: programs and pages of
/// this machine, and only while nothing untrusted shares its network.
///
/// A loopback peer alone is not enough. A web page of another site, open in a browser on this
/// machine, reaches 127.0.0.1 too: it can post to it (the request arrives with that site's
/// `Origin`), or have its own name resolve to 127.0.0.1 and then read the answers (DNS
/// rebinding: the request names that site in `Host`). And a job's command that shares this
/// machine's network (`JOB_NETWORK=host`, or no sandbox in production) is a loopback peer as
/// well: it could enqueue, read every user's jobs and cancel them. Then nobody is let in without
/// the token (the worker decides when: `WorkerApplication.commandsShareNetwork(_:sandboxed:)`).
///
/// Nor is a request that came through a proxy: a reverse proxy on this machine (nginx's plain
/// `proxy_pass http://127.0.0.1:8080`, which also sends that as `Host`) is a loopback peer that
/// passes on every visitor's request. One that says it forwarded (`Forwarded`, `X-Forwarded-*`,
/// `X-Real-IP`, `Via`) is refused; one that says nothing cannot be told apart, which the guide
/// says (set `API_TOKEN` behind any proxy).
public struct LoopbackAccess: Sendable {
    /// Why requests of this machine need the token too (`nil`: they do not).
    public let refusal: String?

    public init(refusal: String? = nil) {
        self.refusal = refusal
    }

    /// This machine's requests let in (no job command shares its network).
    public static let open = LoopbackAccess()

    /// Whether `request`, which carries no valid token, is let in: no ``refusal``, a loopback
    /// peer, a `Host` naming this machine, and no `Origin` but this machine's.
    public func admits<Context: RemoteAddressRequestContext>(_ request: Request, context: Context) -> Bool {
        guard refusal == nil, context.isLoopbackPeer else { return false }
        if let authority = request.head.authority, !Self.namesThisMachine(authority) { return false }
        if let origin = request.headers[.origin], !Self.isThisMachine(origin: origin) { return false }
        if Self.forwardingFields.contains(where: { request.headers[$0] != nil }) { return false }
        return true
    }

    /// The header fields by which proxies say that they forwarded a request.
    static let forwardingFields: [HTTPField.Name] = ["Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-IP", "Via"]
        .compactMap { HTTPField.Name($0) }

    /// What a refused request is told.
    public func refusalMessage(for what: String) -> String {
        if let refusal { return "\(what) needs API_TOKEN here: \(refusal). Set API_TOKEN and send it as a bearer token" }
        return "\(what) answers only on this machine while API_TOKEN is unset (requests to localhost, 127.0.0.1 or [::1], "
            + "from no other site's page, and not through a proxy): set API_TOKEN and send it as a bearer token"
    }

    /// Whether `authority` (a `Host` header: a name or address, maybe a port) is this machine's
    /// loopback: `localhost`, `127.x.x.x` or `[::1]`.
    static func namesThisMachine(_ authority: String) -> Bool {
        var host = Substring(authority.lowercased())
        if host.hasPrefix("[") {
            guard let end = host.firstIndex(of: "]") else { return false }
            return host[host.index(after: host.startIndex)..<end] == "::1"
        }
        if let colon = host.lastIndex(of: ":") { host = host[..<colon] }
        if host == "localhost" { return true }
        let octets = host.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
    }

    /// Whether `origin` (`scheme://host[:port]`) is a page of this machine's loopback.
    static func isThisMachine(origin: String) -> Bool {
        let lowered = origin.lowercased()
        for scheme in ["http://", "https://"] where lowered.hasPrefix(scheme) {
            return namesThisMachine(String(lowered.dropFirst(scheme.count)))
        }
        return false
    }
}
