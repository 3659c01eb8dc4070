import AsyncHTTPClient
import Foundation
import JWTKit
import NIOCore

/// Checks a Supabase user's access token (a JWT) for the job API's read endpoints
/// (docs/WORKER_SERVICE.md, "Job API"): signed with the project's JWT secret (HS256) or one of
/// its signing keys (a JWKS: ES256, RS256), not expired, for the audience the worker expects
/// (`authenticated`). Its subject is the user's id. jwt-kit does the cryptography.
public struct UserTokenVerifier: Sendable {
    private let keys: KeySet
    public let audience: String

    /// The claims the worker reads. Supabase puts more in; they are ignored.
    struct Claims: JWTPayload {
        var sub: SubjectClaim
        var exp: ExpirationClaim
        var aud: AudienceClaim
        /// Supabase issues none today; a token that has one is refused before its time.
        var nbf: NotBeforeClaim?

        func verify(using algorithm: some JWTAlgorithm) async throws {
            try exp.verifyNotExpired()
            try nbf?.verifyNotBefore()
        }
    }

    /// - Parameters:
    ///   - secret: the project's JWT secret (HS256), `SUPABASE_JWT_SECRET`.
    ///   - jwks: the project's signing keys as a JWKS document (`SUPABASE_JWKS_FILE`).
    ///   - jwksURL: where the project publishes them (`SUPABASE_JWKS_URL`), fetched on first use
    ///     and again every ``KeySet/refreshInterval``, or sooner when a token names a key not
    ///     seen yet (a rotation), at most every ``KeySet/retryInterval``.
    /// - Throws: ``ConfigurationError`` when the JWKS cannot be read as one.
    public init(secret: String?, jwks: String?, jwksURL: String? = nil, audience: String) async throws {
        do {
            self.keys = try await KeySet(secret: secret, jwks: jwks, url: jwksURL)
        } catch {
            throw ConfigurationError(variable: "SUPABASE_JWKS_FILE", value: "(its content)", expected: "a JSON Web Key Set with ES256 or RS256 keys: \(error)")
        }
        self.audience = audience
    }

    /// The user a token is for, or why it is refused (for the log; the client gets only 401).
    public func user(fromToken token: String) async -> Result<UUID, Refusal> {
        var claims: Claims?
        var failure = "no key"
        for attempt in 0..<2 {
            do {
                claims = try await keys.current(refreshing: attempt == 1).verify(token, as: Claims.self)
                break
            } catch {
                failure = "\(error)"
                // A key the published set did not have when it was fetched: fetch it again, once
                // (or wait for the fetch another token started).
                guard attempt == 0, await keys.mayRefresh else { break }
            }
        }
        guard let claims else { return .failure(Refusal(reason: failure)) }
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

    /// The keys tokens are checked with: the secret and the file's keys, fixed, and the
    /// published ones, fetched again from time to time.
    actor KeySet {
        static let refreshInterval = Duration.seconds(600)
        static let retryInterval = Duration.seconds(10)

        private let secret: String?
        private let file: String?
        private let url: String?
        private var collection: JWTKeyCollection
        private var fetchedAt: ContinuousClock.Instant?
        private var attemptedAt: ContinuousClock.Instant?
        /// The fetch under way, which every token checked meanwhile waits for. Before, the actor
        /// let them in while the first one fetched, and they were checked against the keys there
        /// were: at start-up none, so every phone's stream but one was refused (401, after which
        /// a browser's `EventSource` never reconnects), and at a rotation every token of the new key.
        private var fetching: Task<Void, Never>?

        init(secret: String?, jwks: String?, url: String?) async throws {
            self.secret = secret
            self.file = jwks
            self.url = url
            self.collection = try await Self.collection(secret: secret, documents: [jwks].compactMap { $0 })
        }

        /// Whether a fetch of the published keys may be made now, or is under way.
        var mayRefresh: Bool {
            guard url != nil else { return false }
            return fetching != nil || attemptedAt.map { ContinuousClock.now - $0 >= Self.retryInterval } ?? true
        }

        /// The keys to check with, the published ones fetched first when due (or `refreshing`),
        /// or once the fetch under way has ended.
        func current(refreshing: Bool) async -> JWTKeyCollection {
            guard let url else { return collection }
            if let fetching {
                await fetching.value
                return collection
            }
            let due = fetchedAt.map { ContinuousClock.now - $0 >= Self.refreshInterval } ?? true
            guard (due || refreshing), mayRefresh else { return collection }
            attemptedAt = .now
            // A task of its own, not the caller's: the others wait for it, and a caller that
            // goes (its client hung up) does not end it for them.
            let fetch = Task { await self.refresh(from: url) }
            fetching = fetch
            await fetch.value
            fetching = nil
            return collection
        }

        private func refresh(from url: String) async {
            do {
                let published = try await Self.fetch(url)
                collection = try await Self.collection(secret: secret, documents: [file, published].compactMap { $0 })
                fetchedAt = .now
            } catch {
                // Keep the keys there are; the next token tries again after the retry interval.
            }
        }

        static func collection(secret: String?, documents: [String]) async throws -> JWTKeyCollection {
            let keys = JWTKeyCollection()
            if let secret { await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256) }
            for document in documents { try await keys.add(jwksJSON: document) }
            return keys
        }

        static func fetch(_ url: String) async throws -> String {
            let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(5))
            guard response.status == .ok else { throw Refusal(reason: "\(url) answered \(response.status.code)") }
            return String(buffer: try await response.body.collect(upTo: 1 << 20))
        }
    }
}

extension WorkerConfiguration {
    /// The verifier of users' access tokens, when `SUPABASE_JWT_SECRET` or `SUPABASE_JWKS_FILE` is set.
    public func userTokenVerifier() async throws -> UserTokenVerifier? {
        guard supabaseJWTSecret != nil || supabaseJWKSFile != nil || supabaseJWKSURL != nil else { return nil }
        var jwks: String?
        if let file = supabaseJWKSFile {
            do {
                jwks = try String(contentsOfFile: file, encoding: .utf8)
            } catch {
                throw ConfigurationError(variable: "SUPABASE_JWKS_FILE", value: file, expected: "a readable file holding the project's JWKS: \(error)")
            }
        }
        return try await UserTokenVerifier(secret: supabaseJWTSecret, jwks: jwks, jwksURL: supabaseJWKSURL, audience: supabaseJWTAudience)
    }
}
