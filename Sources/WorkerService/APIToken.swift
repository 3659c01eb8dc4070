import HTTPTypes
import Hummingbird
import Logging
import WorkerDashboard

/// Who may use the job API: the bearer of `API_TOKEN` (or, while it is unset, only this
/// machine), and, on the read endpoints, a Supabase user with a valid access token when
/// ``UserTokenVerifier`` is configured. Sets ``WorkerRequestContext/caller``.
///
/// The token is compared in constant time (every byte, whatever the first difference), so its
/// value cannot be found a byte at a time from response times.
struct APIToken: RouterMiddleware {
    typealias Context = WorkerRequestContext

    /// `nil`: no token configured; this machine's requests only, as `loopback` lets them in.
    let token: [UInt8]?
    let loopback: LoopbackAccess
    /// Verifies users' access tokens (`nil`: users' tokens are not accepted).
    let users: UserTokenVerifier?
    /// Whether the routes behind this middleware accept a user's token (the read endpoints).
    let allowsUsers: Bool
    let logger: Logger?

    init(_ token: String?, loopback: LoopbackAccess = .open, users: UserTokenVerifier? = nil, allowsUsers: Bool = false, logger: Logger? = nil) {
        self.token = token.map { Array($0.utf8) }
        self.loopback = loopback
        self.users = users
        self.allowsUsers = allowsUsers
        self.logger = logger
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var context = context
        // The scheme's name is case-insensitive (RFC 9110, 11.1): "bearer" is "Bearer".
        let bearer = request.headers[.authorization].flatMap { $0.prefix(7).lowercased() == "bearer " ? String($0.dropFirst(7)) : nil }
        if let token, let bearer, Self.equal(Array(bearer.utf8), token) {
            context.caller = .backend
            return try await next(request, context)
        }
        if token == nil, bearer == nil || users == nil || !allowsUsers {
            guard loopback.admits(request, context: context) else {
                return JobAPI.error(.forbidden, loopback.refusalMessage(for: "the job API"))
            }
            context.caller = .backend
            return try await next(request, context)
        }
        if let users, allowsUsers, let bearer {
            switch await users.user(fromToken: bearer) {
            case .success(let user):
                context.caller = .user(user)
                return try await next(request, context)
            case .failure(let refusal):
                logger?.debug("A bearer token was refused", metadata: ["reason": .string(refusal.reason)])
            }
        }
        var response = JobAPI.error(
            .unauthorized,
            allowsUsers && users != nil
                ? "a valid bearer token is required (API_TOKEN, or a user's access token that has not expired)"
                : "a valid bearer token is required (Authorization: Bearer <API_TOKEN>)")
        response.headers[.wwwAuthenticate] = "Bearer"
        return response
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
