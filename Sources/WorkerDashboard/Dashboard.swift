import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Mustache
import NIOCore
import WorkerCore

/// The operator's web dashboard under `/ui` (docs/WORKER_SERVICE.md, "Dashboard"): the overview,
/// the jobs list, a job with its live events, a session's turns; retry and cancel, one job or a
/// selection. Served by `worker run` on the health server's port and by `worker dashboard`.
///
/// Pages are rendered on the server (Mustache templates compiled into the binary, every value
/// escaped); the one script and stylesheet come from `/ui/assets/`, and the
/// Content-Security-Policy allows nothing else (no inline script, nothing from another origin).
/// Access: ``DashboardAccess``.
public struct Dashboard: Sendable {
    /// Writes a job's events after a sequence number as Server-Sent Events, following new ones
    /// until the job ends (the job API's stream, so both behave alike).
    public typealias EventStream = @Sendable (_ job: UUID, _ after: Int64, _ writer: inout any ResponseBodyWriter) async throws -> Void

    let pages: DashboardPages
    let access: DashboardAccess
    let templates: MustacheLibrary
    let allowsActions: Bool
    let eventStream: EventStream?
    let logger: Logger

    /// - Parameters:
    ///   - token: `API_TOKEN`: asked for once by a login form; `nil` answers loopback peers only.
    ///   - allowsActions: whether retry and cancel are offered (`worker dashboard` without
    ///     `--allow-actions` is read-only: no button, and its POST routes answer 403).
    ///   - loopback: whether this machine's requests are let in while `token` is `nil`.
    public init(
        store: any JobStore, token: String?, loopback: LoopbackAccess = .open, allowsActions: Bool, eventStream: EventStream?, logger: Logger
    ) throws {
        pages = DashboardPages(store: store)
        access = DashboardAccess(token: token, loopback: loopback)
        templates = try DashboardTemplates.library()
        self.allowsActions = allowsActions
        self.eventStream = eventStream
        self.logger = logger
    }

    static let contentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

    public func addRoutes<Context: RequestContext & RemoteAddressRequestContext>(to router: Router<Context>) {
        let assets = router.group("ui/assets")
        assets.get("dashboard.css") { _, _ in Self.asset(DashboardAssets.css, type: "text/css; charset=utf-8") }
        assets.get("dashboard.js") { _, _ in Self.asset(DashboardAssets.javascript, type: "text/javascript; charset=utf-8") }

        let open = router.group("ui").add(middleware: DashboardGate<Context>(access: access, requiresSession: false))
        open.get("login") { request, _ -> Response in
            if access.token == nil { return Self.redirect("/ui") }
            return render("login", ["title": "Sign in"], request: request, signedIn: false)
        }
        open.post("login") { request, _ -> Response in
            guard access.token != nil else { return Self.redirect("/ui") }
            let form = try await Self.form(request)
            guard let given = form.first(where: { $0.0 == "token" })?.1, access.isToken(given) else {
                logger.notice("Dashboard sign-in refused: wrong token")
                return render("login", ["title": "Sign in", "error": "That is not the API token."], request: request, signedIn: false, status: .unauthorized)
            }
            var response = Self.redirect("/ui")
            response.headers.append(HTTPField(
                name: .setCookie, value: DashboardAccess.setCookie(
                    DashboardAccess.sessionCookie, access.newSession(), maxAge: Int(DashboardAccess.sessionLifetime), secure: DashboardAccess.cameOverHTTPS(request))))
            return response
        }

        let ui = router.group("ui").add(middleware: DashboardGate<Context>(access: access, requiresSession: true))
        ui.get { request, _ -> Response in
            render("overview", try await pages.overview(), request: request)
        }
        ui.get("jobs") { request, _ -> Response in
            // The filter form's own encoding (a space is `+`), which Hummingbird's query parameters leave as is.
            var parameters: [String: String] = [:]
            for (name, value) in Self.fields(request.uri.query ?? "") { parameters[name] = value }
            return render("jobs", try await pages.jobs(DashboardPages.ListQuery(parameters)), request: request)
        }
        ui.get("jobs/:id") { request, context -> Response in
            guard let id = context.parameters.get("id").flatMap(UUID.init(uuidString:)), var page = try await pages.job(id) else {
                return render("message", Self.message("No such job", "There is no job with that id."), request: request, status: .notFound)
            }
            // Only a notice the dashboard itself signed: a link of anyone's making showed its own
            // text ("session expired, sign in at ...") in the dashboard's notice box.
            if let notice = request.uri.queryParameters.get("notice"), !notice.isEmpty,
               let signature = request.uri.queryParameters.get("signed"), access.isSigned(notice: String(notice), String(signature)) {
                page["notice"] = notice
            }
            return render("job", page, request: request)
        }
        ui.get("jobs/:id/events") { request, context -> Response in
            guard let eventStream, let id = context.parameters.get("id").flatMap(UUID.init(uuidString:)) else {
                return Response(status: .notFound)
            }
            let from = request.headers[HTTPField.Name("Last-Event-ID")!] ?? request.uri.queryParameters.get("after")
            guard let after = from.map({ Int64($0) }) ?? 0, after >= 0 else { return Response(status: .badRequest) }
            // Nothing more will come: 204 stops the page's EventSource reconnecting.
            if let job = try? await pages.store.job(id: id), (try? await pages.store.eventsEnded(for: job, after: after)) == true {
                return Response(status: .noContent)
            }
            return Response(
                status: .ok,
                headers: [.contentType: "text/event-stream", .cacheControl: "no-store", HTTPField.Name("X-Accel-Buffering")!: "no"],
                body: ResponseBody { writer in try await eventStream(id, after, &writer) }
            )
        }
        ui.get("sessions/:id") { request, context -> Response in
            guard let id = context.parameters.get("id").flatMap(UUID.init(uuidString:)) else {
                return render("message", Self.message("No such session", "A session id is a UUID."), request: request, status: .notFound)
            }
            return render("session", try await pages.session(id), request: request)
        }
        ui.post("logout") { request, _ -> Response in
            let form = try await Self.form(request)
            guard access.acceptsCSRF(Self.value("csrf", in: form), of: request) else { return Self.csrfRefused() }
            var response = Self.redirect(access.token == nil ? "/ui" : "/ui/login")
            response.headers.append(HTTPField(name: .setCookie, value: DashboardAccess.setCookie(DashboardAccess.sessionCookie, "", maxAge: 0, secure: DashboardAccess.cameOverHTTPS(request))))
            return response
        }
        ui.post("jobs/:id/:action") { request, context -> Response in
            let form = try await Self.form(request)
            guard access.acceptsCSRF(Self.value("csrf", in: form), of: request) else { return Self.csrfRefused() }
            guard allowsActions else { return Self.actionsRefused() }
            guard let id = context.parameters.get("id").flatMap(UUID.init(uuidString:)), let action = context.parameters.get("action"),
                  action == "cancel" || action == "retry"
            else { return Response(status: .notFound) }
            let notice: String
            do {
                let job = action == "cancel" ? try await pages.store.cancel(id: id) : try await pages.store.retry(id: id)
                notice = action == "cancel" ? "Cancelled: the job is \(job.status.rawValue)." : "Retried: the job is \(job.status.rawValue) again."
                logger.info("Dashboard action", metadata: ["action": .string(action), "jobId": .string(id.lowercasedText)])
            } catch let error as JobStoreError {
                notice = "Not done: \(error)"
            }
            return Self.redirect(
                "/ui/jobs/\(id.lowercasedText)?notice=\(DashboardPages.queryValue(notice))&signed=\(access.signature(notice: notice))")
        }
        ui.post("jobs/bulk") { request, _ -> Response in
            let form = try await Self.form(request)
            guard access.acceptsCSRF(Self.value("csrf", in: form), of: request) else { return Self.csrfRefused() }
            guard allowsActions else { return Self.actionsRefused() }
            let action = Self.value("action", in: form) ?? ""
            guard action == "retry" || action == "cancel" else {
                return render("message", Self.message("Nothing done", "Choose Retry or Cancel."), request: request, status: .badRequest)
            }
            let ids = form.filter { $0.0 == "id" }.compactMap { UUID(uuidString: $0.1) }
            let verb = action == "retry" ? "Retry" : "Cancel"
            guard !ids.isEmpty else {
                return render("message", Self.message("Nothing done", "Select jobs first (the boxes in the list)."), request: request, status: .badRequest)
            }
            guard ids.count <= 1_000 else {
                return render("message", Self.message("Nothing done", "At most 1,000 jobs at a time."), request: request, status: .badRequest)
            }
            guard Self.value("confirmed", in: form) == "yes" else {
                return render("confirm", [
                    "title": "\(verb) \(ids.count) jobs", "verb": verb, "action": action, "count": ids.count, "ids": ids.map(\.lowercasedText),
                ], request: request)
            }
            var done = 0
            var refused: [String] = []
            for id in ids {
                do {
                    _ = action == "retry" ? try await pages.store.retry(id: id) : try await pages.store.cancel(id: id)
                    done += 1
                } catch let error as JobStoreError {
                    refused.append("\(id.lowercasedText): \(error)")
                }
            }
            logger.info("Dashboard bulk action", metadata: [
                "action": .string(action), "jobs": .stringConvertible(ids.count), "done": .stringConvertible(done),
            ])
            let text = "\(action == "retry" ? "Retried" : "Cancelled") \(done) of \(ids.count) jobs." + (refused.isEmpty ? "" : " \(refused.count) could not be:")
            return render("message", [
                "title": "\(verb) done", "heading": "\(verb) done", "text": text, "hasDetails": !refused.isEmpty, "details": refused,
                "back": "/ui/jobs",
            ], request: request)
        }
    }

    // MARK: - Responses

    /// The page `template` with `values`, plus what every page has: the CSRF token (and its
    /// cookie, set on a browser's first page), whether actions show, the security headers.
    func render(
        _ template: String, _ values: [String: Any], request: Request, signedIn: Bool? = nil, status: HTTPResponse.Status = .ok
    ) -> Response {
        let (cookie, isNew) = access.csrfCookieValue(of: request)
        var values = values
        values["csrf"] = access.csrfToken(cookie: cookie)
        values["actions"] = allowsActions
        values["signedIn"] = signedIn ?? (access.token != nil)
        let html = templates.render(values, withTemplate: template) ?? "template \(template) is missing"
        var response = Response(status: status, headers: [.contentType: "text/html; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: html)))
        if isNew {
            response.headers.append(HTTPField(name: .setCookie, value: DashboardAccess.setCookie(DashboardAccess.csrfCookie, cookie, maxAge: 30 * 86_400, secure: DashboardAccess.cameOverHTTPS(request))))
        }
        return response
    }

    static func message(_ heading: String, _ text: String) -> [String: Any] {
        ["title": heading, "heading": heading, "text": text, "back": "/ui"]
    }

    static func redirect(_ location: String) -> Response {
        Response(status: .seeOther, headers: [.location: location])
    }

    static func csrfRefused() -> Response {
        Response(
            status: .forbidden, headers: [.contentType: "text/plain; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(string: "The form's CSRF token is missing or wrong: reload the page and try again.\n")))
    }

    static func actionsRefused() -> Response {
        Response(
            status: .forbidden, headers: [.contentType: "text/plain; charset=utf-8"],
            body: .init(byteBuffer: ByteBuffer(string: "This dashboard is read-only: start `worker dashboard` with --allow-actions to retry or cancel jobs.\n")))
    }

    static func asset(_ text: String, type: String) -> Response {
        Response(status: .ok, headers: [.contentType: type, .cacheControl: "no-cache"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    // MARK: - Forms

    /// The fields of an `application/x-www-form-urlencoded` body (at most 1 MiB), in order.
    static func form(_ request: Request) async throws -> [(String, String)] {
        let body = try await request.body.collect(upTo: 1 << 20)
        return fields(String(buffer: body))
    }

    /// The fields of `application/x-www-form-urlencoded` text (a form's body, or its query
    /// string when it is sent with GET). A part with a broken escape (`%FF`, `%`) is kept as it
    /// was sent: decoded to nothing, a filter was dropped and the page listed every job.
    static func fields(_ text: String) -> [(String, String)] {
        text.split(separator: "&").map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map {
                let spaced = $0.replacingOccurrences(of: "+", with: " ")
                return spaced.removingPercentEncoding ?? spaced
            }
            return (parts[0], parts.count > 1 ? parts[1] : "")
        }
    }

    static func value(_ name: String, in form: [(String, String)]) -> String? {
        form.first { $0.0 == name }?.1
    }
}
