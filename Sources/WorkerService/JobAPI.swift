import CoreMetrics
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import WorkerCore
import WorkerDashboard

/// The job endpoints of the worker's HTTP server, for backends, phones and the dashboard to
/// come (docs/WORKER_SERVICE.md, "Job API"):
///
/// - `GET /jobs/{id}`: the job as JSON (keys are the table's columns).
/// - `GET /jobs/{id}/events`: its events as Server-Sent Events (`id:` the sequence number,
///   `event:` the kind, `data:` the event as JSON), from `Last-Event-ID` or `?after=`, then live,
///   closed after the event that ends the job.
/// - `POST /jobs`: enqueues the JSON object in the body (the fields of a `worker enqueue --jsonl`
///   line); `POST /jobs/{id}/cancel`.
///
/// All of them need `Authorization: Bearer <API_TOKEN>` (``APIToken``); the two `GET`s also take a
/// Supabase user's access token when ``UserTokenVerifier`` is configured, and then answer only
/// that user's jobs (any other is 404).
public struct JobAPI: Sendable {
    let store: any JobStore
    let feed: JobEventFeed
    let token: String?
    /// Whether this machine's requests are let in while `token` is `nil`.
    let loopback: LoopbackAccess
    let users: UserTokenVerifier?
    let defaultMaxAttempts: Int
    /// Called after an enqueue, so that this worker claims at once.
    let enqueued: @Sendable () -> Void
    let logger: Logger

    /// The longest request body `POST /jobs` reads.
    static let maximumBodyBytes = 1 << 20
    /// A comment line sent on an idle stream this often, so that proxies keep it open.
    static let heartbeat = Duration.seconds(15)
    /// The most event streams one user (an access token's subject) may have open at once; more
    /// answer 429. A phone follows a job or a few.
    static let streamsPerUser = 8

    /// The most users' streams a process serves at once (backends' are not counted).
    static let userStreamsInAll = 1_000
    let userStreams = UserStreamCount(limit: JobAPI.streamsPerUser, totalLimit: JobAPI.userStreamsInAll)

    /// Why a user's event stream was refused: their own streams (`user_full`), or this
    /// worker's (`worker_full`: it takes no more users' streams).
    enum StreamRefusal: String { case userFull = "user_full", allFull = "worker_full" }

    /// Counts a refused stream (`worker_event_streams_refused_total{reason}`), which was
    /// answered 429 or 503 and said nowhere else. (Not logged: clients try again every 5 s,
    /// and a line each would flood the log just when many are turned away.)
    static func refusedStream(_ reason: StreamRefusal) {
        Counter(label: "worker_event_streams_refused_total", dimensions: [("reason", reason.rawValue)]).increment()
    }

    public init(
        store: any JobStore, feed: JobEventFeed, token: String?, loopback: LoopbackAccess = .open, users: UserTokenVerifier? = nil,
        defaultMaxAttempts: Int, logger: Logger, enqueued: @escaping @Sendable () -> Void = {}
    ) {
        self.store = store
        self.feed = feed
        self.token = token
        self.loopback = loopback
        self.users = users
        self.defaultMaxAttempts = defaultMaxAttempts
        self.logger = logger
        self.enqueued = enqueued
    }

    func addRoutes(to router: Router<WorkerRequestContext>) {
        // Reading: backends and, with a verified access token, the job's own user.
        let reads = router.group("jobs").add(middleware: APIToken(token, loopback: loopback, users: users, allowsUsers: true, logger: logger))
        reads.get(":id") { _, context -> Response in
            guard let id = Self.jobID(context), let job = try await store.job(id: id),
                  context.caller?.maySee(owner: job.userID) == true
            else { return Self.notFound() }
            return Self.json(.ok, JobPresentation.json(JobPresentation.jsonObject(job), pretty: false))
        }
        reads.get(":id/events") { request, context -> Response in
            guard let id = Self.jobID(context) else { return Self.notFound() }
            let job: Job?
            do {
                job = try await store.job(id: id)
            } catch {
                // Not a 500: a browser's EventSource gives up for good on any answer but 200, and
                // this one (the database restarting) is worth asking again in a second.
                logger.warning("Event stream cannot read the database", metadata: ["jobId": .string(id.lowercasedText), "error": "\(error)"])
                return Self.reconnectLater()
            }
            guard let job, context.caller?.maySee(owner: job.userID) == true else { return Self.notFound() }
            let from = request.headers[Self.lastEventID] ?? request.uri.queryParameters.get("after")
            guard let after = from.map({ Int64($0) }) ?? 0, after >= 0 else {
                return Self.error(.badRequest, "Last-Event-ID and ?after= are event sequence numbers (0 or more)")
            }
            if (try? await store.eventsEnded(for: job, after: after)) == true { return Response(status: .noContent) }
            let slot: UserStreamCount.Slot?
            if case .user(let user) = context.caller {
                switch userStreams.reserve(for: user) {
                case .success(let reserved):
                    slot = reserved
                case .failure(.userFull):
                    Self.refusedStream(.userFull)
                    var response = Self.error(
                        .tooManyRequests, "this user has \(Self.streamsPerUser) event streams open, the most allowed: close one first")
                    response.headers[.retryAfter] = "5"
                    return response
                case .failure(.allFull):
                    Self.refusedStream(.allFull)
                    var response = Self.error(
                        .serviceUnavailable, "this worker serves \(Self.userStreamsInAll) users' event streams, the most it takes: try again shortly")
                    response.headers[.retryAfter] = "5"
                    return response
                }
            } else {
                slot = nil
            }
            let channel = context.channel
            return Response(
                status: .ok,
                headers: [.contentType: "text/event-stream", .cacheControl: "no-store", .init("X-Accel-Buffering")!: "no"],
                body: ResponseBody { writer in
                    // The stream's place, kept until the body is done with (see `UserStreamCount.Slot`).
                    defer { withExtendedLifetime(slot) {} }
                    try await stream(id, after: after, client: channel, to: &writer)
                }
            )
        }
        // Changing: backends only (a user goes through the database's functions).
        let jobs = router.group("jobs").add(middleware: APIToken(token, loopback: loopback))
        jobs.post { request, _ -> Response in
            let body = try await request.body.collect(upTo: Self.maximumBodyBytes)
            // Refused, not repaired: decoded loosely, bytes that are not UTF-8 became U+FFFD and
            // a prompt other than the one sent was enqueued.
            guard let text = String(validating: body.readableBytesView, as: UTF8.self) else {
                return Self.error(.badRequest, "the body is not UTF-8 text (JSON must be)")
            }
            let job: NewJob
            do {
                job = try JobInput.job(fromJSONLine: Substring(text), defaultMaxAttempts: defaultMaxAttempts)
            } catch let error as JobInput.Invalid {
                return Self.error(.badRequest, error.description)
            }
            let id: UUID
            do {
                id = try await store.enqueue([job])[0]
            } catch let error as JobStoreError {
                // A value the database cannot store (PostgreSQL's text holds no NUL character, nor
                // its jsonb a \u0000) is the request's fault: 400, not a 500 a backend retries.
                switch error {
                case .valueRejected, .invalidJob:
                    return Self.error(.badRequest, error.description)
                case .enqueueOutcomeUnknown(let first, _, _):
                    // Its id, so that a backend looks for it (GET /jobs/{id}) before sending the
                    // job again: a bare 500, retried, enqueued it twice.
                    logger.error("Enqueue's outcome unknown", metadata: ["jobId": .string(first.lowercasedText), "error": "\(error)"])
                    return Self.json(
                        .internalServerError,
                        #"{"error":"# + JSONText.quoted(error.description) + #","id":"\#(first.lowercasedText)","mayBeStored":true}"#)
                default:
                    throw error
                }
            }
            enqueued()
            var response = Self.json(.created, #"{"id":"\#(id.lowercasedText)"}"#)
            response.headers[.location] = "/jobs/\(id.lowercasedText)"
            return response
        }
        jobs.post(":id/cancel") { _, context -> Response in
            guard let id = Self.jobID(context) else { return Self.notFound() }
            do {
                let job = try await store.cancel(id: id)
                return Self.json(.ok, JobPresentation.json(JobPresentation.jsonObject(job), pretty: false))
            } catch JobStoreError.jobNotFound {
                return Self.notFound()
            } catch let error as JobStoreError {
                // Only a job whose state allows no cancel is a conflict; the database refusing the
                // write (a privilege, a constraint, a row it cannot read) is the server's fault.
                if case .invalidTransition = error { return Self.error(.conflict, error.description) }
                logger.error("Could not cancel a job", metadata: ["jobId": .string(id.lowercasedText), "error": "\(error)"])
                return Self.error(.internalServerError, error.description)
            }
        }
    }

    /// ``stream(_:after:to:)`` for the dashboard's job page, which follows the same stream.
    var eventStream: Dashboard.EventStream {
        { [self] id, after, writer in try await stream(id, after: after, to: &writer) }
    }

    /// Writes the job's events after `after`, then new ones as they are stored, until the job
    /// has ended (or the server shuts down, or the client goes away: the write throws).
    ///
    /// A job's events are all stored before its outcome, so once the job is seen finished one
    /// more read has them all: the job is read after an empty read of its events, and then its
    /// events again. A job cancelled while running ends when its worker has stopped the command
    /// (its lease is cleared then, after the `cancelled` event is stored; by the rescue if that
    /// worker died). A job deleted meanwhile ends the stream too. The database failing meanwhile
    /// does not: the stream waits and reads again, as a reconnecting client would.
    ///
    /// - Parameter client: the request's connection, watched for the client's going
    ///   (``ClientHangUp``): the stream then ends at once, giving back its user's place.
    func stream(_ id: UUID, after: Int64, client: (any Channel)? = nil, to writer: inout any ResponseBodyWriter) async throws {
        let subscription = feed.subscribe(to: id)
        defer { subscription.cancel() }
        let hangUp: ClientHangUp? = if let client { await ClientHangUp.watch(client) { subscription.wake() } } else { nil }
        defer { hangUp?.stop() }
        var last = after
        var lastWrite = ContinuousClock.now
        var storeFailing = false
        // Reconnect after a second when the connection drops (EventSource does, with Last-Event-ID).
        try await writer.write(ByteBuffer(string: "retry: 1000\n\n"))
        reading: while !Task.isCancelled, !Task.isShuttingDownGracefully, hangUp?.happened != true {
            let step: StreamStep
            do {
                step = try await next(id, after: last)
                if storeFailing {
                    storeFailing = false
                    logger.info("Event stream reading the database again", metadata: ["jobId": .string(id.lowercasedText)])
                }
            } catch is CancellationError {
                break reading
            } catch {
                if !storeFailing {
                    storeFailing = true
                    logger.warning("Event stream cannot read the database; waiting", metadata: [
                        "jobId": .string(id.lowercasedText), "error": "\(error)",
                    ])
                }
                step = .wait
            }
            switch step {
            case .events(let events):
                var buffer = ByteBuffer()
                var ended = false
                for event in events {
                    buffer.writeString("id: \(event.sequence)\nevent: \(event.kind.rawValue)\ndata: ")
                    buffer.writeString(JobEventPresentation.jsonLine(event))
                    buffer.writeString("\n\n")
                    ended = JobEventPresentation.endsJob(event)
                }
                try await writer.write(buffer)
                last = events[events.count - 1].sequence
                lastWrite = .now
                // An ending event read from the past (a job failed, then retried) ends only an
                // attempt: the stream goes on while the job itself has not ended. (Before, a
                // stream opened on a retried job closed at its earlier attempt's `failed`.)
                if ended, try await jobHasEnded(id) { break reading }
                // What one stream holds is bounded in bytes as well as events (the store ends a
                // page at ``JobEventPaging/pageBytes``): a page that stopped at a bound is followed
                // at once.
                if JobEventPaging.mayHaveMore(events, limit: JobEventPaging.maximumPageSize) { continue reading }
            case .end:
                break reading
            case .again:
                continue reading
            case .wait:
                break
            }
            if ContinuousClock.now - lastWrite >= Self.heartbeat {
                try await writer.write(ByteBuffer(string: ": keep-alive\n\n"))
                lastWrite = .now
            }
            await subscription.wait()
        }
        try await writer.finish(nil)
    }

    /// What a stream does next.
    enum StreamStep {
        /// Write these (the job's next events).
        case events([JobEvent])
        /// Nothing more will come: the job has ended (or is gone).
        case end
        /// Read again at once: events arrived as the job was seen finished.
        case again
        /// Wait for the job's next events.
        case wait
    }

    /// Reads what follows `after` for ``stream(_:after:to:)``.
    func next(_ id: UUID, after: Int64) async throws -> StreamStep {
        let events = try await store.events(
            jobID: id, after: after, limit: JobEventPaging.maximumPageSize, maxBytes: JobEventPaging.pageBytes)
        if !events.isEmpty { return .events(events) }
        guard let job = try await store.job(id: id) else { return .end }
        guard job.status.isFinal else { return .wait }
        if try await store.eventsEnded(for: job, after: after) { return .end }
        // Still being stopped, or events stored between the read above and this look at the job.
        return job.isBeingStopped ? .wait : .again
    }

    /// Whether the job has ended, asked when an ending event was the last one read (a job's
    /// ending event is its last). A job gone from the table has ended; a database failing here
    /// ends the stream (the client reconnects and reads on from its last event).
    func jobHasEnded(_ id: UUID) async throws -> Bool {
        guard let job = try await store.job(id: id) else { return true }
        return job.status.isFinal && !job.isBeingStopped
    }

    static let lastEventID = HTTPField.Name("Last-Event-ID")!

    static func jobID(_ context: WorkerRequestContext) -> UUID? {
        context.parameters.get("id").flatMap { UUID(uuidString: $0) }
    }

    static func json(_ status: HTTPResponse.Status, _ body: String) -> Response {
        Response(
            status: status,
            headers: [.contentType: "application/json", .cacheControl: "no-store"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: body))
        )
    }

    static func error(_ status: HTTPResponse.Status, _ message: String) -> Response {
        json(status, #"{"error":"# + JSONText.quoted(message) + "}")
    }

    /// An event stream that only says to reconnect in a second (the database did not answer).
    static func reconnectLater() -> Response {
        Response(
            status: .ok,
            headers: [.contentType: "text/event-stream", .cacheControl: "no-store"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: "retry: 1000\n: the database did not answer; reconnect\n\n"))
        )
    }

    /// Also for a job id that is not a UUID: ids cannot be probed.
    static func notFound() -> Response {
        error(.notFound, "no such job")
    }
}
