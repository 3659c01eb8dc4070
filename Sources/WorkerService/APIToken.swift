import HTTPTypes
import Hummingbird

/// Who may use the job API: the bearer of `API_TOKEN`, or, while it is unset, only this machine.
///
/// The token is compared in constant time (every byte, whatever the first difference), so its
/// value cannot be found a byte at a time from response times.
struct APIToken: RouterMiddleware {
    typealias Context = WorkerRequestContext

    /// `nil`: no token configured; loopback peers only.
    let token: [UInt8]?

    init(_ token: String?) {
        self.token = token.map { Array($0.utf8) }
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let token else {
            guard context.isLoopbackPeer else {
                return JobAPI.error(.forbidden, "the job API answers only on this machine while API_TOKEN is unset: set API_TOKEN and send it as a bearer token")
            }
            return try await next(request, context)
        }
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer "),
              Self.equal(Array(header.utf8.dropFirst(7)), token)
        else {
            var response = JobAPI.error(.unauthorized, "a valid bearer token is required (Authorization: Bearer <API_TOKEN>)")
            response.headers[.wwwAuthenticate] = "Bearer"
            return response
        }
        return try await next(request, context)
    }

    /// Whether `given` equals `expected`, in time that depends only on their lengths.
    static func equal(_ given: [UInt8], _ expected: [UInt8]) -> Bool {
        var difference: UInt8 = given.count == expected.count ? 0 : 1
        for index in 0..<max(given.count, expected.count) {
            let a = index < given.count ? given[index] : 0
            let b = index < expected.count ? expected[index] : 0
            difference |= a ^ b
        }
        return difference == 0
    }
}
