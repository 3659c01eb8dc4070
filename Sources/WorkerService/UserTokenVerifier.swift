import Foundation
import JWTKit

/// Checks a Supabase user's access token (a JWT) for the job API's read endpoints
/// (docs/WORKER_SERVICE.md, "Job API"): signed with the project's JWT secret (HS256) or one of
/// its signing keys (a JWKS: ES256, RS256), not expired, for the audience the worker expects
/// (`authenticated`). Its subject is the user's id. jwt-kit does the cryptography.
public struct UserTokenVerifier: Sendable {
    private let keys: JWTKeyCollection
    public let audience: String

    /// The claims the worker reads. Supabase puts more in; they are ignored.
    struct Claims: JWTPayload {
        var sub: SubjectClaim
        var exp: ExpirationClaim
        var aud: AudienceClaim

        func verify(using algorithm: some JWTAlgorithm) async throws {
            try exp.verifyNotExpired()
        }
    }

    /// - Parameters:
    ///   - secret: the project's JWT secret (HS256), `SUPABASE_JWT_SECRET`.
    ///   - jwks: the project's signing keys as a JWKS document (`SUPABASE_JWKS_FILE`).
    /// - Throws: ``ConfigurationError`` when the JWKS cannot be read as one.
    public init(secret: String?, jwks: String?, audience: String) async throws {
        let keys = JWTKeyCollection()
        if let secret {
            await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
        }
        if let jwks {
            do {
                try await keys.add(jwksJSON: jwks)
            } catch {
                throw ConfigurationError(variable: "SUPABASE_JWKS_FILE", value: "(its content)", expected: "a JSON Web Key Set with ES256 or RS256 keys: \(error)")
            }
        }
        self.keys = keys
        self.audience = audience
    }

    /// The user a token is for, or why it is refused (for the log; the client gets only 401).
    public func user(fromToken token: String) async -> Result<UUID, Refusal> {
        let claims: Claims
        do {
            claims = try await keys.verify(token, as: Claims.self)
        } catch {
            return .failure(Refusal(reason: "\(error)"))
        }
        do {
            try claims.aud.verifyIntendedAudience(includes: audience)
        } catch {
            return .failure(Refusal(reason: "the token is not for the audience \(audience)"))
        }
        guard let user = UUID(uuidString: claims.sub.value) else {
            return .failure(Refusal(reason: "the token's subject is not a user id"))
        }
        return .success(user)
    }

    public struct Refusal: Error, CustomStringConvertible {
        public let reason: String
        public var description: String { reason }
    }
}

extension WorkerConfiguration {
    /// The verifier of users' access tokens, when `SUPABASE_JWT_SECRET` or `SUPABASE_JWKS_FILE` is set.
    public func userTokenVerifier() async throws -> UserTokenVerifier? {
        guard supabaseJWTSecret != nil || supabaseJWKSFile != nil else { return nil }
        var jwks: String?
        if let file = supabaseJWKSFile {
            do {
                jwks = try String(contentsOfFile: file, encoding: .utf8)
            } catch {
                throw ConfigurationError(variable: "SUPABASE_JWKS_FILE", value: file, expected: "a readable file holding the project's JWKS: \(error)")
            }
        }
        return try await UserTokenVerifier(secret: supabaseJWTSecret, jwks: jwks, audience: supabaseJWTAudience)
    }
}
