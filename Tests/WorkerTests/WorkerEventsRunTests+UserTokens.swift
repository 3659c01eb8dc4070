import Foundation
import JWTKit
import Testing

extension WorkerEventsRunTests.JobAPI {
    /// A Supabase user's access token, as Supabase signs it: HS256 with the project's secret, or
    /// ES256 with a key of its JWKS.
    struct SupabaseClaims: JWTPayload {
        var sub: SubjectClaim
        var exp: ExpirationClaim
        var aud: AudienceClaim
        var role: String
        var nbf: NotBeforeClaim? = nil

        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }

    static let secret = "test-project-jwt-secret-0123456789abcdefghijklmnop"

    static func claims(_ user: UUID, expiresIn seconds: Double = 3600, audience: String = "authenticated") -> SupabaseClaims {
        SupabaseClaims(
            sub: SubjectClaim(value: user.uuidString.lowercased()), exp: ExpirationClaim(value: Date(timeIntervalSinceNow: seconds)),
            aud: AudienceClaim(value: [audience]), role: "authenticated")
    }

    @Test("users' access tokens: each user reads only their own jobs and events (HS256 secret and ES256 JWKS); others 404; expired, tampered, wrong-audience or foreign tokens 401; no user token changes anything")
    func userTokens() async throws {
        let folder = try TemporaryDirectory()
        // The project's keys: the JWT secret, and an ES256 key published in a JWKS file.
        let signing = ES256PrivateKey()
        let (x, y) = try #require(signing.publicKey.parameters)
        let jwks = #"{"keys":[{"kty":"EC","crv":"P-256","alg":"ES256","use":"sig","kid":"test-es256","x":"\#(x)","y":"\#(y)"}]}"#
        let jwksFile = folder.url.appendingPathComponent("jwks.json")
        try jwks.write(to: jwksFile, atomically: true, encoding: .utf8)
        let (worker, _, port) = try Self.start(folder.url, [
            "SUPABASE_JWT_SECRET": Self.secret, "SUPABASE_JWKS_FILE": jwksFile.path, "MAX_CONCURRENT_JOBS": "2",
        ])
        defer { worker.kill9() }
        #expect(try await eventually("ready") { try await http(port: port, path: "/ready").status == 200 })
        #expect(worker.stdout.contains("Users' access tokens are accepted"), "\(worker.stdout)")

        let (alice, bob) = (UUID(), UUID())
        func enqueue(_ user: UUID?) async throws -> String {
            let body = user.map { #"{"prompt":"p","userId":"\#($0.uuidString.lowercased())"}"# } ?? #"{"prompt":"system"}"#
            let created = try await Self.request("POST", port: port, path: "/jobs", body: body)
            return try #require(jsonObject(created.body)?["id"] as? String, "\(created)")
        }
        let (aliceJob, bobJob, systemJob) = (try await enqueue(alice), try await enqueue(bob), try await enqueue(nil))

        let hmac = JWTKeyCollection()
        await hmac.add(hmac: HMACKey(from: Self.secret), digestAlgorithm: .sha256)
        let ecdsa = JWTKeyCollection()
        await ecdsa.add(ecdsa: signing, kid: "test-es256")
        let aliceToken = try await hmac.sign(Self.claims(alice))
        let bobToken = try await ecdsa.sign(Self.claims(bob), kid: "test-es256")

        // Each user sees their own job and its events, and nothing else (404, as for no job at all).
        for (token, own, others) in [(aliceToken, aliceJob, [bobJob, systemJob]), (bobToken, bobJob, [aliceJob, systemJob])] {
            let shown = try await Self.request("GET", port: port, path: "/jobs/\(own)", token: token)
            #expect(shown.status == 200 && jsonObject(shown.body)?["id"] as? String == own, "\(shown)")
            _ = try await eventually("\(own) completed") {
                jsonObject(try await Self.request("GET", port: port, path: "/jobs/\(own)", token: token).body)?["status"] as? String == "completed"
            }
            let stream = try await Self.request("GET", port: port, path: "/jobs/\(own)/events", token: token)
            #expect(stream.status == 200 && stream.body.contains("event: status") && stream.body.contains(#""status":"completed""#), "\(stream)")
            for other in others {
                #expect(try await Self.request("GET", port: port, path: "/jobs/\(other)", token: token).status == 404)
                #expect(try await Self.request("GET", port: port, path: "/jobs/\(other)/events", token: token).status == 404)
            }
            // A user's token changes nothing: enqueue and cancel are for the backend's token.
            #expect(try await Self.request("POST", port: port, path: "/jobs", token: token, body: #"{"prompt":"x"}"#).status == 401)
            #expect(try await Self.request("POST", port: port, path: "/jobs/\(own)/cancel", token: token).status == 401)
        }
        // Refused: expired, for another audience, tampered with, signed with another secret or key.
        let otherKeys = JWTKeyCollection()
        await otherKeys.add(hmac: HMACKey(from: Self.secret + "-not"), digestAlgorithm: .sha256)
        let foreignES = JWTKeyCollection()
        await foreignES.add(ecdsa: ES256PrivateKey(), kid: "test-es256")
        var parts = aliceToken.split(separator: ".").map(String.init)
        let forgedPayload = Data(try JSONEncoder().encode(Self.claims(bob))).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        parts[1] = forgedPayload
        let refused: [(String, String)] = [
            ("expired", try await hmac.sign(Self.claims(alice, expiresIn: -60))),
            ("not valid before an hour from now (nbf)", try await hmac.sign({
                var claims = Self.claims(alice)
                claims.nbf = NotBeforeClaim(value: Date(timeIntervalSinceNow: 3600))
                return claims
            }())),
            ("wrong audience", try await hmac.sign(Self.claims(alice, audience: "anon"))),
            ("tampered (Bob's claims under Alice's signature)", parts.joined(separator: ".")),
            ("another secret", try await otherKeys.sign(Self.claims(alice))),
            ("another ES256 key", try await foreignES.sign(Self.claims(bob), kid: "test-es256")),
            ("not a JWT", "not-a-token"),
        ]
        for (what, token) in refused {
            #expect(try await Self.request("GET", port: port, path: "/jobs/\(aliceJob)", token: token).status == 401, "\(what)")
            #expect(try await Self.request("GET", port: port, path: "/jobs/\(bobJob)/events", token: token).status == 401, "\(what)")
        }
        // The backend's token still reads every job.
        #expect(try await Self.request("GET", port: port, path: "/jobs/\(systemJob)").status == 200)
        worker.send(SIGTERM)
        #expect(await worker.waitForExit(timeout: .seconds(15)) == 0)
    }

    @Test("one user has at most 8 event streams open at once: the 9th answers 429 until one of them closes; a backend is not counted")
    func streamsPerUser() async throws {
        let folder = try TemporaryDirectory()
        let (worker, _, port) = try Self.start(folder.url, ["SUPABASE_JWT_SECRET": Self.secret, "MAX_CONCURRENT_JOBS": "2"])
        defer { worker.kill9() }
        #expect(try await eventually("ready") { try await http(port: port, path: "/ready").status == 200 })
        let alice = UUID()
        let created = try await Self.request(
            "POST", port: port, path: "/jobs", body: #"{"prompt":"long","userId":"\#(alice.uuidString.lowercased())","payload":{"sleepMs":60000}}"#)
        let job = try #require(jsonObject(created.body)?["id"] as? String, "\(created)")
        let keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: Self.secret), digestAlgorithm: .sha256)
        let token = try await keys.sign(Self.claims(alice))
        let path = "/jobs/\(job)/events"
        // One more stream, held for at most 2 s: its status.
        let another = { (token: String) async throws -> Int in
            try await Self.curl("GET", port: port, path: path, headers: ["Authorization: Bearer \(token)"], extra: ["--max-time", "2"], directory: folder.url)
        }
        var followers: [WorkerProcess] = []
        defer { for follower in followers { follower.kill9() } }
        for _ in 0..<8 {
            followers.append(try WorkerProcess(
                ["-sN", "-H", "Authorization: Bearer \(token)", "http://127.0.0.1:\(port)\(path)"], environment: [:], directory: folder.url,
                executable: URL(fileURLWithPath: "/usr/bin/curl")))
        }
        // All eight answered before a ninth is tried (a ninth first took a place from one of them).
        #expect(try await eventually("eight streams answered") { followers.allSatisfy { $0.stdout.hasPrefix("retry: 1000") } })
        #expect(try await another(token) == 429)
        // Counted (before: said nowhere).
        let metrics = try await http(port: port, path: "/metrics").body
        #expect(metrics.contains(#"worker_event_streams_refused_total{reason="user_full"} 1"#), "\(metrics.split(separator: "\n").filter { $0.contains("refused") })")
        // The backend's token is not counted.
        #expect(try await another(Self.token) == 200)
        // One closes: a new one is let in.
        followers.removeLast().kill9()
        #expect(try await eventually("a place freed") { try await another(token) == 200 })
        #expect(try await Self.request("POST", port: port, path: "/jobs/\(job)/cancel").status == 200)
        worker.send(SIGTERM)
        #expect(await worker.waitForExit(timeout: .seconds(15)) == 0)
    }

    @Test("a stream whose client has gone gives its user's place back at once, even while its job is quiet: reconnecting ten times in a row is never refused")
    func closedStreamsFreePlaces() async throws {
        let folder = try TemporaryDirectory()
        let (worker, _, port) = try Self.start(folder.url, ["SUPABASE_JWT_SECRET": Self.secret])
        defer { worker.kill9() }
        #expect(try await eventually("ready") { try await http(port: port, path: "/ready").status == 200 })
        let alice = UUID()
        // Not due for years: the stream has nothing to write, not even a keep-alive (15 s).
        let created = try await Self.request(
            "POST", port: port, path: "/jobs", body: #"{"prompt":"later","userId":"\#(alice.uuidString.lowercased())","runAt":"2030-01-01T00:00:00Z"}"#)
        let job = try #require(jsonObject(created.body)?["id"] as? String, "\(created)")
        let keys = JWTKeyCollection()
        await keys.add(hmac: HMACKey(from: Self.secret), digestAlgorithm: .sha256)
        let token = try await keys.sign(Self.claims(alice))
        // A phone reconnecting (a page reloaded, a network change): one stream at a time, each
        // closed by its client after half a second. Before, each closed stream kept its place
        // until its second keep-alive failed (15-30 s): the 9th was answered 429.
        var statuses: [Int] = []
        for _ in 0..<10 {
            statuses.append(try await Self.curl(
                "GET", port: port, path: "/jobs/\(job)/events", headers: ["Authorization: Bearer \(token)"], extra: ["--max-time", "0.5"],
                directory: folder.url))
        }
        #expect(statuses == Array(repeating: 200, count: 10))
        worker.send(SIGTERM)
        #expect(await worker.waitForExit(timeout: .seconds(15)) == 0)
    }

    static func jwks(_ keys: [(kid: String, key: ES256PrivateKey)]) throws -> String {
        let entries = try keys.map { entry -> String in
            let (x, y) = try #require(entry.key.publicKey.parameters)
            return #"{"kty":"EC","crv":"P-256","alg":"ES256","use":"sig","kid":"\#(entry.kid)","x":"\#(x)","y":"\#(y)"}"#
        }
        return #"{"keys":[\#(entries.joined(separator: ","))]}"#
    }

    /// A key server on this machine serving `folder`, whose requests run `doGet` (the Python body
    /// of a `SimpleHTTPRequestHandler.do_GET`; `super().do_GET()` serves the file); returns it
    /// once it answers, with its port.
    static func keyServer(in folder: URL, doGet: String) async throws -> (WorkerProcess, Int) {
        let port = try freePort()
        let body = doGet.split(separator: "\n", omittingEmptySubsequences: false).map { "        " + $0 }.joined(separator: "\n")
        let server = try WorkerProcess(
            ["python3", "-c", """
            import functools, http.server, sys, time
            class Handler(http.server.SimpleHTTPRequestHandler):
                def do_GET(self):
            \(body)
            http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), functools.partial(Handler, directory=sys.argv[2])).serve_forever()
            """, "\(port)", folder.path],
            environment: ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"], directory: folder,
            executable: URL(fileURLWithPath: "/usr/bin/env"))
        #expect(try await eventually("the key server") { try await http(port: port, path: "/").status == 200 })
        return (server, port)
    }

    @Test("SUPABASE_JWKS_URL: the published keys are fetched on first use, and again when a token names a key they did not have (a rotation)")
    func publishedKeys() async throws {
        let folder = try TemporaryDirectory()
        let (first, rotated) = (ES256PrivateKey(), ES256PrivateKey())
        let published = folder.url.appendingPathComponent("jwks.json")
        try Self.jwks([("first", first)]).write(to: published, atomically: true, encoding: .utf8)
        // The project's endpoint, played by a static file server on this machine.
        let serverPort = try freePort()
        let server = try WorkerProcess(
            ["python3", "-m", "http.server", "\(serverPort)", "--bind", "127.0.0.1", "--directory", folder.url.path],
            environment: ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"], directory: folder.url,
            executable: URL(fileURLWithPath: "/usr/bin/env"))
        defer { server.kill9() }
        #expect(try await eventually("the key server") { try await http(port: serverPort, path: "/jwks.json").status == 200 })
        let (worker, _, port) = try Self.start(folder.url, ["SUPABASE_JWKS_URL": "http://127.0.0.1:\(serverPort)/jwks.json"])
        defer { worker.kill9() }
        #expect(try await eventually("ready") { try await http(port: port, path: "/ready").status == 200 })
        let user = UUID()
        let created = try await Self.request("POST", port: port, path: "/jobs", body: #"{"prompt":"p","userId":"\#(user.uuidString.lowercased())"}"#)
        let job = try #require(jsonObject(created.body)?["id"] as? String, "\(created)")
        func token(_ key: ES256PrivateKey, kid: String) async throws -> String {
            let keys = JWTKeyCollection()
            await keys.add(ecdsa: key, kid: JWKIdentifier(string: kid))
            return try await keys.sign(Self.claims(user), kid: JWKIdentifier(string: kid))
        }
        #expect(try await Self.request("GET", port: port, path: "/jobs/\(job)", token: try await token(first, kid: "first")).status == 200)
        // The project rotates its key: the worker learns the new one from the endpoint.
        try Self.jwks([("first", first), ("rotated", rotated)]).write(to: published, atomically: true, encoding: .utf8)
        let rotatedToken = try await token(rotated, kid: "rotated")
        #expect(try await eventually("the rotated key is accepted", timeout: .seconds(30)) {
            try await Self.request("GET", port: port, path: "/jobs/\(job)", token: rotatedToken).status == 200
        })
        // A key the project never published stays refused.
        #expect(try await Self.request("GET", port: port, path: "/jobs/\(job)", token: try await token(ES256PrivateKey(), kid: "rotated")).status == 401)
        worker.send(SIGTERM)
        #expect(await worker.waitForExit(timeout: .seconds(15)) == 0)
    }

    @Test("SUPABASE_JWKS_URL: tokens checked while the first fetch of the keys is under way wait for it, and are accepted")
    func tokensDuringTheFirstFetch() async throws {
        let folder = try TemporaryDirectory()
        let key = ES256PrivateKey()
        try Self.jwks([("only", key)]).write(to: folder.url.appendingPathComponent("jwks.json"), atomically: true, encoding: .utf8)
        // A key server that takes 2 s to answer, as a distant one may.
        let (server, serverPort) = try await Self.keyServer(in: folder.url, doGet: """
            time.sleep(2)
            super().do_GET()
            """)
        defer { server.kill9() }
        let (worker, _, port) = try Self.start(folder.url, ["SUPABASE_JWKS_URL": "http://127.0.0.1:\(serverPort)/jwks.json"])
        defer { worker.kill9() }
        #expect(try await eventually("ready") { try await http(port: port, path: "/ready").status == 200 })
        let user = UUID()
        let created = try await Self.request("POST", port: port, path: "/jobs", body: #"{"prompt":"p","userId":"\#(user.uuidString.lowercased())"}"#)
        let job = try #require(jsonObject(created.body)?["id"] as? String, "\(created)")
        let keys = JWTKeyCollection()
        await keys.add(ecdsa: key, kid: JWKIdentifier(string: "only"))
        let token = try await keys.sign(Self.claims(user), kid: JWKIdentifier(string: "only"))
        // Five phones at once, before the worker has the keys: before, only the one whose token
        // started the fetch was let in, the others answered 401.
        let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<5 { group.addTask { try await Self.request("GET", port: port, path: "/jobs/\(job)", token: token).status } }
            return try await group.reduce(into: [Int]()) { $0.append($1) }
        }
        #expect(statuses == Array(repeating: 200, count: 5), "\(statuses)")
        worker.send(SIGTERM)
        #expect(await worker.waitForExit(timeout: .seconds(15)) == 0)
    }

    @Test("SUPABASE_JWKS_URL: a redirect is not followed (the URL checked at start-up is the only place keys come from); tokens of the keys at its target are refused")
    func publishedKeysNoRedirect() async throws {
        let folder = try TemporaryDirectory()
        let elsewhere = ES256PrivateKey()
        try Self.jwks([("moved", elsewhere)]).write(to: folder.url.appendingPathComponent("moved.json"), atomically: true, encoding: .utf8)
        // The configured address answers with a redirect, as a gateway might, to keys served
        // somewhere the start-up check would refuse (here the same server, for the test).
        let (server, serverPort) = try await Self.keyServer(in: folder.url, doGet: """
            if self.path == "/jwks.json":
                self.send_response(302)
                self.send_header("Location", "/moved.json")
                self.end_headers()
            else:
                super().do_GET()
            """)
        defer { server.kill9() }
        let (worker, _, port) = try Self.start(folder.url, [
            "SUPABASE_JWKS_URL": "http://127.0.0.1:\(serverPort)/jwks.json", "LOG_LEVEL": "info",
        ])
        defer { worker.kill9() }
        #expect(try await eventually("ready") { try await http(port: port, path: "/ready").status == 200 })
        let user = UUID()
        let created = try await Self.request("POST", port: port, path: "/jobs", body: #"{"prompt":"p","userId":"\#(user.uuidString.lowercased())"}"#)
        let job = try #require(jsonObject(created.body)?["id"] as? String, "\(created)")
        let keys = JWTKeyCollection()
        await keys.add(ecdsa: elsewhere, kid: JWKIdentifier(string: "moved"))
        let token = try await keys.sign(Self.claims(user), kid: JWKIdentifier(string: "moved"))
        // Before: the worker followed the redirect, took the keys there, and answered 200.
        #expect(try await Self.request("GET", port: port, path: "/jobs/\(job)", token: token).status == 401)
        // Said at warning, where an operator sees it (before: at debug only, in each refusal).
        #expect(try await eventually("the failed fetch is said") {
            worker.stdout.contains("Could not fetch the published keys") && worker.stdout.contains("redirects are not followed")
        }, "\(worker.stdout.suffix(2000))")
        worker.send(SIGTERM)
        #expect(await worker.waitForExit(timeout: .seconds(15)) == 0)
    }

    @Test("SUPABASE_JWKS_FILE with an RSA key that names no algorithm: a forged token naming RS512 does not make the real RS256 tokens fail after it")
    func rsaKeyWithoutAlgorithm() async throws {
        let folder = try TemporaryDirectory()
        let pem = folder.url.appendingPathComponent("key.pem").path
        let generated = try await WorkerProcess.command(
            ["genrsa", "-out", pem, "2048"], environment: [:], directory: folder.url, executable: URL(fileURLWithPath: "/usr/bin/openssl"))
        try #require(generated.status == 0, "openssl: \(generated.stderr)")
        let key = try Insecure.RSA.PrivateKey(pem: try String(contentsOfFile: pem, encoding: .utf8))
        let (modulus, exponent) = try key.publicKey.getKeyPrimitives()
        func base64URL(_ data: Data) -> String {
            data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
                .replacingOccurrences(of: "=", with: "")
        }
        // No "alg", as a hand-made file may have it.
        let jwks = #"{"keys":[{"kty":"RSA","use":"sig","kid":"rsa","n":"\#(base64URL(modulus))","e":"\#(base64URL(exponent))"}]}"#
        let file = folder.url.appendingPathComponent("jwks.json")
        try jwks.write(to: file, atomically: true, encoding: .utf8)
        let (worker, _, port) = try Self.start(folder.url, ["SUPABASE_JWKS_FILE": file.path])
        defer { worker.kill9() }
        #expect(try await eventually("ready") { try await http(port: port, path: "/ready").status == 200 })
        let user = UUID()
        let created = try await Self.request("POST", port: port, path: "/jobs", body: #"{"prompt":"p","userId":"\#(user.uuidString.lowercased())"}"#)
        let job = try #require(jsonObject(created.body)?["id"] as? String, "\(created)")
        // Anyone's request: a header naming the key and RS512, any payload, no valid signature.
        let forged = [#"{"alg":"RS512","typ":"JWT","kid":"rsa"}"#, #"{"sub":"x"}"#].map { base64URL(Data($0.utf8)) }.joined(separator: ".") + ".AAAA"
        #expect(try await Self.request("GET", port: port, path: "/jobs/\(job)", token: forged).status == 401)
        let keys = JWTKeyCollection()
        await keys.add(rsa: key, digestAlgorithm: .sha256, kid: JWKIdentifier(string: "rsa"))
        let token = try await keys.sign(Self.claims(user), kid: JWKIdentifier(string: "rsa"))
        // Before: 401 from then on, for every user, until the worker restarted.
        for _ in 0..<3 {
            #expect(try await Self.request("GET", port: port, path: "/jobs/\(job)", token: token).status == 200)
        }
        worker.send(SIGTERM)
        #expect(await worker.waitForExit(timeout: .seconds(15)) == 0)
    }
}
