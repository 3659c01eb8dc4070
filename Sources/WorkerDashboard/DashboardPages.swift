import Foundation
import WorkerCore

/// What each page shows, read from the store and shaped for its template (plain values: the
/// templates escape them).
struct DashboardPages: Sendable {
    let store: any JobStore
    /// Jobs a page of the list shows.
    static let pageSize = 50
    /// Events the job page shows before following the rest live.
    static let eventsShown = 2_000
    /// Stored bytes of events the job page reads at most before following the rest live: 2,000
    /// events of up to `JOB_EVENT_MAX_BYTES` (1 MiB) each made one page gigabytes, built in the
    /// worker's memory (the shipped manifests give it 512 MiB) and then in the browser's.
    static let eventBytesRead = 2 << 20
    /// The most of one event's text, of the result and of the payload a page shows; the rest is
    /// said to be there (`worker jobs logs ID --json`, `worker jobs show ID --json`).
    static let textShown = 8 << 10
    static let resultShown = 256 << 10

    // MARK: - Overview

    func overview(now: Date = Date()) async throws -> [String: Any] {
        let stats = try await store.stats(window: nil)
        let timeline = try await store.finishedTimeline(window: .seconds(3_600), interval: .seconds(60))
        // Counts of all running jobs; a few of each worker's ids from the newest 500.
        let runningByWorker = try await store.runningJobsByWorker()
        let running = try await store.jobs(matching: JobFilter(status: .processing, limit: 500, summary: true))
        var byWorker: [String: [Job]] = [:]
        for job in running { byWorker[job.lockedBy ?? "", default: []].append(job) }
        let statuses: [(String, Int)] = [
            ("pending", stats.pending), ("processing", stats.processing), ("completed", stats.completed),
            ("failed", stats.failed), ("cancelled", stats.cancelled),
        ]
        return [
            "title": "Overview",
            "refresh": 5,
            "statuses": statuses.map { ["name": $0.0, "count": $0.1] as [String: Any] },
            "total": stats.total,
            "hourCompleted": timeline.reduce(0) { $0 + $1.completed },
            "hourFailed": timeline.reduce(0) { $0 + $1.failed },
            "chart": DashboardChart.svg(timeline, now: now),
            "queues": stats.queues.keys.sorted().map { name -> [String: Any] in
                let counts = stats.queues[name]!
                return [
                    "name": name, "pending": counts.pending, "processing": counts.processing, "completed": counts.completed,
                    "failed": counts.failed, "cancelled": counts.cancelled, "oldest": Self.age(counts.oldestPendingAgeSeconds),
                ]
            },
            "workers": runningByWorker.sorted { $0.key < $1.key }.map { name, count -> [String: Any] in
                let shown = (byWorker[name] ?? []).prefix(10)
                return Self.present([
                    "name": name.isEmpty ? "?" : name, "count": count,
                    "jobs": shown.map { ["id": $0.id.lowercasedText, "short": Self.short($0.id)] },
                    // (Read by another query: jobs may have ended, or started, in between.)
                    "more": max(0, count - shown.count),
                ])
            },
            "sessionsRunning": stats.sessions.running,
            "sessionsWaiting": stats.sessions.waitingTurns,
        ]
    }

    // MARK: - Jobs

    /// The filters of the jobs list, from its query string.
    struct ListQuery: Sendable {
        var status: JobStatus?
        var queue: String?
        var session: UUID?
        var user: UUID?
        var text: String?
        var before: UUID?
        /// Problems with the query, said on the page.
        var problems: [String] = []

        init(_ parameters: [String: String]) {
            func value(_ name: String) -> String? {
                parameters[name].map { $0.trimmingCharacters(in: .whitespaces) }.flatMap { $0.isEmpty ? nil : $0 }
            }
            if let text = value("status") {
                if let status = JobStatus(rawValue: text) { self.status = status } else { problems.append("unknown status \(text)") }
            }
            // No control characters: PostgreSQL's text holds no NUL, and `?q=%00` was a 500.
            for (name, keyPath) in [("queue", \ListQuery.queue), ("q", \ListQuery.text)] {
                guard let given = value(name) else { continue }
                if given.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
                    problems.append("\(name == "q" ? "the search" : name) holds a control character; it was left out")
                } else {
                    self[keyPath: keyPath] = given
                }
            }
            for (name, keyPath) in [("session", \ListQuery.session), ("user", \ListQuery.user), ("before", \ListQuery.before)] {
                guard let text = value(name) else { continue }
                if let id = UUID(uuidString: text) { self[keyPath: keyPath] = id } else { problems.append("\(name) is not a UUID: \(text)") }
            }
        }

        /// The query string of the page after this one.
        ///
        /// Every value percent-encoded but letters and digits: `URLComponents` leaves `+` as it
        /// is, which the query's reading takes for a space (a filter `c++` came back as `c`).
        func next(after id: UUID) -> String {
            var items: [(String, String)] = []
            if let status { items.append(("status", status.rawValue)) }
            if let queue { items.append(("queue", queue)) }
            if let session { items.append(("session", session.lowercasedText)) }
            if let user { items.append(("user", user.lowercasedText)) }
            if let text { items.append(("q", text)) }
            items.append(("before", id.lowercasedText))
            return "/ui/jobs?" + items.map { "\($0.0)=\(DashboardPages.queryValue($0.1))" }.joined(separator: "&")
        }
    }

    func jobs(_ query: ListQuery) async throws -> [String: Any] {
        let filter = JobFilter(
            status: query.status, queue: query.queue, session: query.session, user: query.user, limit: Self.pageSize + 1, summary: true,
            promptContains: query.text, before: query.before, orderedByID: true)
        let listed = query.problems.isEmpty ? try await store.jobs(matching: filter) : []
        let page = listed.prefix(Self.pageSize)
        return Self.present([
            "title": "Jobs",
            "refresh": query.before == nil ? 5 : 0,
            "statusOptions": JobStatus.allCases.map { ["name": $0.rawValue, "selected": $0 == query.status] as [String: Any] },
            "queue": query.queue ?? "", "session": query.session?.lowercasedText ?? "", "user": query.user?.lowercasedText ?? "",
            "q": query.text ?? "",
            "error": query.problems.isEmpty ? "" : query.problems.joined(separator: "; "),
            "rows": page.map { job -> [String: Any] in
                [
                    "id": job.id.lowercasedText, "short": Self.short(job.id), "status": job.status.rawValue, "queue": job.queue,
                    "prompt": Self.oneLine(job.prompt), "attempts": job.attempts, "maxAttempts": job.maxAttempts, "created": Self.time(job.createdAt),
                ]
            },
            "next": listed.count > Self.pageSize ? query.next(after: page.last!.id) : "",
        ])
    }

    // MARK: - Job

    func job(_ id: UUID) async throws -> [String: Any]? {
        guard let job = try await store.job(id: id) else { return nil }
        let (shown, moreEvents) = try await firstEvents(of: id)
        var fields: [[String: Any]] = [
            ["name": "Status", "value": job.status.rawValue],
            ["name": "Queue", "value": job.queue, "link": "/ui/jobs?queue=\(Self.queryValue(job.queue))"],
            ["name": "Session", "value": job.sessionID?.lowercasedText ?? "—", "link": job.sessionID.map { "/ui/sessions/\($0.lowercasedText)" } ?? ""],
            ["name": "User", "value": job.userID?.lowercasedText ?? "—", "link": job.userID.map { "/ui/jobs?user=\($0.lowercasedText)" } ?? ""],
            ["name": "Priority", "value": "\(job.priority)"],
            ["name": "Attempts", "value": "\(job.attempts) of \(job.maxAttempts)"],
            ["name": "Created", "value": Self.time(job.createdAt)],
            ["name": "Runs at", "value": Self.time(job.runAt)],
            ["name": "Started", "value": job.startedAt.map(Self.time) ?? "—"],
            ["name": "Finished", "value": job.completedAt.map(Self.time) ?? "—"],
            ["name": "Worker", "value": job.lockedBy ?? "—"],
            ["name": "Lease expires", "value": job.leaseExpiresAt.map(Self.time) ?? "—"],
        ]
        if job.heldBySession { fields.append(["name": "Waiting", "value": "for an earlier turn of its session"]) }
        if job.blocksSession {
            fields.append(["name": "Holding its session", "value": "yes (SESSION_ON_FAILURE=block): retry or cancel it to let later turns run"])
        }
        let usage = job.usage
        let spent = "\(usage.inputTokens) input tokens, \(usage.outputTokens) output tokens, $\(String(format: "%.4f", usage.costUSD)), "
            + "\(String(format: "%.2f", usage.runSeconds)) s run, \(String(format: "%.2f", usage.cpuSeconds)) s CPU"
        fields.append(["name": "Spent", "value": spent])
        let attemptErrors = shown.compactMap { event -> [String: Any]? in
            guard event.kind == .status, let object = Self.object(event.data), let error = object["error"] as? String else { return nil }
            return ["attempt": event.attempt, "error": error]
        }
        return Self.present([
            "title": "Job \(Self.short(id))",
            "id": id.lowercasedText, "status": job.status.rawValue,
            // Still followed while its command is being stopped: its last lines and the
            // `cancelled` event are yet to come (a page opened by its own Cancel missed them).
            "final": job.status.isFinal && !job.isBeingStopped,
            "cancellable": job.status == .pending || job.status == .processing || (job.status == .failed && job.blocksSession),
            "retryable": job.status == .failed || job.status == .cancelled,
            "fields": fields.map { Self.present($0) },
            "prompt": job.prompt,
            "payload": Self.cut(Self.pretty(job.payload), to: Self.resultShown, rest: "worker jobs show ID --json"),
            "result": job.result.map { Self.cut(Self.pretty($0), to: Self.resultShown, rest: "worker jobs show ID --json") } ?? "",
            "lastError": job.lastError ?? "",
            "hasAttemptErrors": !attemptErrors.isEmpty, "attemptErrors": attemptErrors,
            "events": shown.map {
                ["seq": $0.sequence, "kind": $0.kind.rawValue, "text": Self.cut(Self.describe($0), to: Self.textShown, rest: "worker jobs logs ID --json")] as [String: Any]
            },
            "lastSequence": shown.last?.sequence ?? 0,
            "moreEvents": moreEvents, "shown": shown.count,
        ])
    }

    /// The job's first events, at most ``eventsShown`` and about ``eventBytesRead`` bytes, read in
    /// pages bounded in bytes (``JobEventPaging``, as the event stream reads), and whether more
    /// follow.
    private func firstEvents(of id: UUID) async throws -> (events: [JobEvent], more: Bool) {
        var shown: [JobEvent] = []
        var bytes = 0
        var after: Int64 = 0
        while true {
            let limit = min(JobEventPaging.maximumPageSize, Self.eventsShown - shown.count + 1)
            let maxBytes = min(JobEventPaging.pageBytes, max(1, Self.eventBytesRead - bytes + 1))
            let page = try await store.events(jobID: id, after: after, limit: limit, maxBytes: maxBytes)
            for event in page {
                if shown.count == Self.eventsShown || bytes >= Self.eventBytesRead { return (shown, true) }
                shown.append(event)
                bytes += event.data.utf8.count
            }
            guard JobEventPaging.mayHaveMore(page, limit: limit, maxBytes: maxBytes), let last = page.last else { return (shown, false) }
            after = last.sequence
        }
    }

    /// `text`, or its first `limit` bytes and a note of how many more there are and where.
    static func cut(_ text: String, to limit: Int, rest: String) -> String {
        let count = text.utf8.count
        guard count > limit else { return text }
        var used = 0
        var end = text.unicodeScalars.endIndex
        for index in text.unicodeScalars.indices {
            let width = UTF8.width(text.unicodeScalars[index])
            if used + width > limit {
                end = index
                break
            }
            used += width
        }
        return String(text.unicodeScalars[..<end]) + " … (\(count - used) bytes more: \(rest))"
    }

    // MARK: - Session

    func session(_ id: UUID) async throws -> [String: Any] {
        let turns = try await store.jobs(matching: JobFilter(session: id, limit: 1_000, summary: true))
        return [
            "title": "Session \(Self.short(id))", "id": id.lowercasedText, "refresh": 5,
            "turns": turns.enumerated().map { index, job -> [String: Any] in
                let duration: String
                if let started = job.startedAt {
                    duration = String(format: "%.1f s", (job.completedAt ?? Date()).timeIntervalSince(started)) + (job.completedAt == nil ? " so far" : "")
                } else {
                    duration = "—"
                }
                return [
                    "number": index + 1, "id": job.id.lowercasedText, "short": Self.short(job.id), "status": job.status.rawValue,
                    "prompt": Self.oneLine(job.prompt), "attempts": job.attempts, "created": Self.time(job.createdAt), "duration": duration,
                ]
            },
        ]
    }

    // MARK: - Shaping values

    /// `values` without the keys whose value is "" or 0: a Mustache section shows for any value
    /// but `false`, `nil` and an empty list, and a template tests these for presence.
    static func present(_ values: [String: Any]) -> [String: Any] {
        values.filter { _, value in
            if let text = value as? String { return !text.isEmpty }
            if let number = value as? Int { return number != 0 }
            return true
        }
    }

    static func short(_ id: UUID) -> String { String(id.lowercasedText.suffix(12)) }

    static func oneLine(_ text: String) -> String {
        let line = text.split(whereSeparator: \.isNewline).first.map(String.init) ?? ""
        return line.count > 120 ? String(line.prefix(120)) + "…" : line
    }

    /// `2026-12-02 04:15:02 UTC`: the zone said, as the CLI's `Z` says it (the format makes
    /// none, and times read as local ones).
    static func time(_ date: Date) -> String {
        var text = date.formatted(.iso8601.year().month().day().dateSeparator(.dash).time(includingFractionalSeconds: false).timeSeparator(.colon))
        text = text.replacingOccurrences(of: "T", with: " ")
        if text.hasSuffix("Z") { text.removeLast() }
        return text + " UTC"
    }

    static func age(_ seconds: Double?) -> String {
        guard let seconds else { return "—" }
        if seconds < 120 { return String(format: "%.0f s", seconds) }
        if seconds < 7_200 { return String(format: "%.0f min", seconds / 60) }
        return String(format: "%.1f h", seconds / 3_600)
    }

    static func object(_ json: String) -> [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(json.utf8))) as? [String: Any]
    }

    /// JSON indented for reading (as stored when it is not JSON).
    static func pretty(_ json: String) -> String {
        guard let value = try? JSONSerialization.jsonObject(with: Data(json.utf8), options: [.fragmentsAllowed]),
              let data = try? JSONSerialization.data(withJSONObject: value, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes, .fragmentsAllowed])
        else { return json }
        return String(decoding: data, as: UTF8.self)
    }

    /// An event's line: the text of output and log lines, a status and its details, a message as stored.
    static func describe(_ event: JobEvent) -> String {
        let object = Self.object(event.data)
        switch event.kind {
        case .output, .log:
            return (object?["text"] as? String) ?? event.data
        case .status:
            var fields = object ?? [:]
            let status = fields.removeValue(forKey: "status").map { "\($0)" } ?? "?"
            return ([status] + fields.keys.sorted().map { "\($0)=\(fields[$0]!)" }).joined(separator: " ")
        default:
            return event.data
        }
    }

    static func queryValue(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? text
    }
}
