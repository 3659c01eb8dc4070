import AsyncHTTPClient
import Foundation
import JWTKit
import Logging
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
    ///   - logger: where a failed fetch of the published keys is said (at warning).
    public init(
        secret: String?, jwks: String?, jwksURL: String? = nil, audience: String, logger: Logger = Logger(label: "worker.auth")
    ) async throws {
        do {
            self.keys = try await KeySet(secret: secret, jwks: jwks, url: jwksURL, logger: logger)
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
        guard let claims else {
            // Why the published keys may be missing, for the log (a fetch's failure is otherwise silent).
            let fetch = await keys.lastFetchFailure.map { "; the last fetch of the published keys failed: \($0)" } ?? ""
            return .failure(Refusal(reason: failure + fetch))
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
        /// Why the last fetch of the published keys failed (`nil`: it did not), for refusals' reasons.
        private(set) var lastFetchFailure: String?

        private let logger: Logger

        init(secret: String?, jwks: String?, url: String?, logger: Logger) async throws {
            self.logger = logger
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
                lastFetchFailure = nil
            } catch {
                // Keep the keys there are; the next token tries again after the retry interval.
                // Said at warning: every user whose token needs a key not fetched yet gets 401,
                // and the refusals themselves are logged at debug only (one line per request).
                lastFetchFailure = "\(error)"
                logger.warning(
                    "Could not fetch the published keys (SUPABASE_JWKS_URL): tokens signed with keys not fetched yet are refused until a fetch succeeds",
                    metadata: ["url": .string(url), "error": .string("\(error)"), "retryInSeconds": .stringConvertible(Self.retryInterval.components.seconds)])
            }
        }

        static func collection(secret: String?, documents: [String]) async throws -> JWTKeyCollection {
            let keys = JWTKeyCollection()
            if let secret { await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256) }
            for document in documents { try await keys.add(jwksJSON: try withAlgorithms(document)) }
            return keys
        }

        /// `document` with each key's algorithm named where it names none: RSA keys RS256, EC
        /// keys the ES algorithm of their curve, Ed25519 EdDSA (how Supabase signs).
        ///
        /// jwt-kit builds the verifier of a key without `alg` from the first token that names the
        /// key, and keeps it: one forged token naming RS512 (no valid signature needed) made
        /// every real RS256 token fail until the keys were loaded again (with a file, until the
        /// worker restarted). Supabase publishes `alg`; a hand-made file may not.
        static func withAlgorithms(_ document: String) throws -> String {
            guard var set = try JSONSerialization.jsonObject(with: Data(document.utf8)) as? [String: Any],
                  let keys = set["keys"] as? [[String: Any]]
            else { return document }
            set["keys"] = keys.map { key -> [String: Any] in
                guard key["alg"] == nil else { return key }
                var key = key
                switch (key["kty"] as? String, key["crv"] as? String) {
                case ("RSA", _): key["alg"] = "RS256"
                case ("EC", "P-256"): key["alg"] = "ES256"
                case ("EC", "P-384"): key["alg"] = "ES384"
                case ("EC", "P-521"): key["alg"] = "ES512"
                case ("OKP", "Ed25519"): key["alg"] = "EdDSA"
                default: break
                }
                return key
            }
            return String(decoding: try JSONSerialization.data(withJSONObject: set), as: UTF8.self)
        }

        /// The client of the key fetches, which follows no redirect: `SUPABASE_JWKS_URL` is
        /// checked (https, or http to this machine) when the worker starts, and a redirect to
        /// anywhere else (plain http across a network) would have let whoever answers there
        /// publish keys and sign tokens for any user. Never shut down: it lives as long as the
        /// process, as `HTTPClient.shared` does.
        static let client: HTTPClient = {
            var configuration = HTTPClient.Configuration()
            configuration.redirectConfiguration = .disallow
            return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
        }()

        static func fetch(_ url: String) async throws -> String {
            let response = try await client.execute(HTTPClientRequest(url: url), timeout: .seconds(5))
            guard response.status == .ok else {
                let redirect = (300..<400).contains(response.status.code)
                    ? " (redirects are not followed: set SUPABASE_JWKS_URL to the address that serves the keys)" : ""
                throw Refusal(reason: "\(url) answered \(response.status.code)\(redirect)")
            }
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
