import Crypto
import Foundation
import HTTPTypes
import Hummingbird

/// Who may use the dashboard, and the proof a form was posted by the dashboard's own page.
///
/// - With `API_TOKEN` set, the login form asks for it once and sets a session cookie:
///   `<expiry>.<HMAC-SHA256(token, expiry)>`, HttpOnly and SameSite=Strict. It holds no secret,
///   needs no server-side state (it survives a restart, and `worker dashboard` accepts the
///   cookie `worker run` set), and a new token ends every session.
/// - Without it, only this machine (a loopback peer) is answered, as the job API does.
/// - Every POST carries a CSRF token: the HMAC of the browser's CSRF cookie (random, SameSite=
///   Strict) under a key derived from the token (without one: random for this process). Another
///   site can neither read the page that holds the CSRF token nor send the cookie with its
///   request; every replica behind a load balancer accepts what another's page holds.
struct DashboardAccess: Sendable {
    static let sessionCookie = "mobvibe_dashboard"
    static let csrfCookie = "mobvibe_csrf"
    /// How long a login lasts.
    static let sessionLifetime: TimeInterval = 12 * 3_600

    let token: String?
    /// Whether this machine's requests are let in while `token` is `nil`.
    let loopback: LoopbackAccess
    /// The key of CSRF tokens. With `API_TOKEN`, derived from it: a key of each process made
    /// every action fail whenever the page came from one replica and the post went to another
    /// (two times in three with three). Without it (this machine only), random for the process.
    private let csrfKey: SymmetricKey

    init(token: String?, loopback: LoopbackAccess = .open) {
        self.token = token.flatMap { $0.isEmpty ? nil : $0 }
        self.loopback = loopback
        csrfKey = self.token.map { token in
            SymmetricKey(data: HMAC<SHA256>.authenticationCode(for: Array("mobvibe-dashboard-csrf-key".utf8), using: SymmetricKey(data: Array(token.utf8))))
        } ?? SymmetricKey(size: .bits256)
    }

    // MARK: - Sessions

    /// Whether `given` is the API token (compared in constant time).
    func isToken(_ given: String) -> Bool {
        guard let token else { return false }
        return Self.equal(given, token)
    }

    /// A session cookie's value, valid until `now` plus ``sessionLifetime``.
    func newSession(now: Date = Date()) -> String {
        let expiry = String(Int(now.timeIntervalSince1970 + Self.sessionLifetime))
        return "\(expiry).\(signature(of: "session:\(expiry)"))"
    }

    /// Whether the request is allowed: a valid session cookie with a token set; without one, a
    /// loopback peer.
    func allows(_ request: Request, loopback: Bool, now: Date = Date()) -> Bool {
        guard token != nil else { return loopback }
        guard let value = request.cookies[Self.sessionCookie]?.value else { return false }
        let parts = value.split(separator: ".", maxSplits: 1).map(String.init)
        guard parts.count == 2, let expiry = TimeInterval(parts[0]), expiry > now.timeIntervalSince1970 else { return false }
        return Self.equal(parts[1], signature(of: "session:\(parts[0])"))
    }

    private func signature(of message: String) -> String {
        let key = SymmetricKey(data: Array((token ?? "").utf8))
        return Self.mac(message, key: key)
    }

    // MARK: - CSRF

    /// The browser's CSRF cookie value, or a new one to set.
    func csrfCookieValue(of request: Request) -> (value: String, isNew: Bool) {
        if let value = request.cookies[Self.csrfCookie]?.value, value.count == 32, value.allSatisfy(\.isHexDigit) {
            return (value, false)
        }
        return ((0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined(), true)
    }

    /// The token forms carry for the browser whose CSRF cookie is `cookie`.
    func csrfToken(cookie: String) -> String {
        Self.mac("csrf:\(cookie)", key: csrfKey)
    }

    /// Whether a posted form's `csrf` field matches the request's CSRF cookie.
    func acceptsCSRF(_ given: String?, of request: Request) -> Bool {
        guard let given, let cookie = request.cookies[Self.csrfCookie]?.value else { return false }
        return Self.equal(given, csrfToken(cookie: cookie))
    }

    // MARK: - Notices

    /// The signature of a notice the dashboard shows after an action (the redirect carries both).
    func signature(notice: String) -> String {
        Self.mac("notice:\(notice)", key: csrfKey)
    }

    /// Whether `signature` is the dashboard's for `notice`.
    func isSigned(notice: String, _ signature: String) -> Bool {
        Self.equal(signature, self.signature(notice: notice))
    }

    /// HMAC-SHA256 of `message` under `key`, in hex: sessions, CSRF tokens and notices are each
    /// signed so, with a prefix of their own in the message.
    private static func mac(_ message: String, key: SymmetricKey) -> String {
        HMAC<SHA256>.authenticationCode(for: Array(message.utf8), using: key).map { String(format: "%02x", $0) }.joined()
    }

    /// Whether `a` equals `b`, in time that depends only on their lengths (as the job API's token check).
    static func equal(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        var difference: UInt8 = x.count == y.count ? 0 : 1
        for index in 0..<max(x.count, y.count) {
            difference |= (index < x.count ? x[index] : 0) ^ (index < y.count ? y[index] : 0)
        }
        return difference == 0
    }

    /// `Set-Cookie` for a cookie of the dashboard's paths.
    ///
    /// `Secure` when the request came over HTTPS (a TLS-terminating proxy says so): the browser
    /// then never sends the 12-hour session over plain HTTP (a link to `http://` the worker's name).
    /// Not otherwise: a browser keeps no `Secure` cookie set over plain HTTP to another host.
    static func setCookie(_ name: String, _ value: String, maxAge: Int, secure: Bool = false) -> String {
        "\(name)=\(value); Path=/ui; Max-Age=\(maxAge); HttpOnly; SameSite=Strict" + (secure ? "; Secure" : "")
    }

    /// Whether a proxy in front says the browser's request came over HTTPS
    /// (`X-Forwarded-Proto: https`, or `proto=https` in `Forwarded`).
    static func cameOverHTTPS(_ request: Request) -> Bool {
        if let proto = HTTPField.Name("X-Forwarded-Proto").flatMap({ request.headers[$0] }),
           proto.split(separator: ",").first?.trimmingCharacters(in: .whitespaces).lowercased() == "https" {
            return true
        }
        if let forwarded = HTTPField.Name("Forwarded").flatMap({ request.headers[$0] }) {
            return forwarded.lowercased().split(whereSeparator: { $0 == ";" || $0 == "," })
                .contains { $0.trimmingCharacters(in: .whitespaces) == "proto=https" }
        }
        return false
    }
}
