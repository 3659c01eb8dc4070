import HTTPTypes
import Hummingbird
import NIOCore

/// Lets a request reach the dashboard's pages only as ``DashboardAccess`` allows (a signed-in
/// browser with `API_TOKEN` set, this machine without it), and adds the security headers to
/// every answer: a page without a session is sent to the login form; anything else answers 401.
struct DashboardGate<Context: RequestContext & RemoteAddressRequestContext>: RouterMiddleware {
    let access: DashboardAccess
    /// `false` for the login form itself.
    let requiresSession: Bool

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response: Response
        if access.token == nil, !access.loopback.admits(request, context: context) {
            response = Self.text(.forbidden, access.loopback.refusalMessage(for: "The dashboard") + ".\n")
        } else if requiresSession, !access.allows(request, loopback: true) {
            if request.method == .get, !request.uri.path.hasSuffix("/events") {
                response = Response(status: .seeOther, headers: [.location: "/ui/login"])
            } else {
                response = Self.text(.unauthorized, "Sign in at /ui/login first.\n")
            }
        } else {
            response = try await next(request, context)
        }
        response.headers[.contentSecurityPolicy] = Dashboard.contentSecurityPolicy
        response.headers[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
        response.headers[HTTPField.Name("X-Frame-Options")!] = "DENY"
        response.headers[HTTPField.Name("Referrer-Policy")!] = "no-referrer"
        if response.headers[.cacheControl] == nil { response.headers[.cacheControl] = "no-store" }
        return response
    }

    static func text(_ status: HTTPResponse.Status, _ text: String) -> Response {
        Response(status: status, headers: [.contentType: "text/plain; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}
