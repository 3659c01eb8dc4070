import Foundation
import WorkerCore

/// Turns user input (a JSON object of `worker enqueue --jsonl`, or command-line flags) into a ``NewJob``.
public enum JobInput {
    /// An input that cannot become a job; the description names the field.
    public struct Invalid: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    static let knownKeys: Set<String> = [
        "prompt", "queue", "sessionId", "session_id", "priority", "runAt", "run_at",
        "maxAttempts", "max_attempts", "payload", "userId", "user_id",
    ]

    /// Parses one JSONL line: `{"prompt": "...", "queue": "...", "sessionId": "...", "priority": 1,
    /// "runAt": "ISO-8601", "maxAttempts": 3, "payload": {...}}` (snake_case keys work too).
    public static func job(fromJSONLine line: Substring, defaultMaxAttempts: Int) throws -> NewJob {
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(line.utf8))
        } catch {
            throw Invalid(description: "not valid JSON")
        }
        guard let fields = object as? [String: Any] else { throw Invalid(description: "expected a JSON object") }
        if let unknown = fields.keys.first(where: { !knownKeys.contains($0) }) {
            throw Invalid(description: "unknown key \"\(unknown)\" (known: prompt, queue, sessionId, priority, runAt, maxAttempts, payload, userId)")
        }
        guard let prompt = fields["prompt"] as? String else { throw Invalid(description: "\"prompt\" is missing or not a string") }
        func string(_ keys: String...) throws -> String? {
            for key in keys where fields[key] != nil && !(fields[key] is NSNull) {
                guard let value = fields[key] as? String else { throw Invalid(description: "\"\(key)\" must be a string") }
                return value
            }
            return nil
        }
        func integer(_ keys: String...) throws -> Int? {
            for key in keys where fields[key] != nil && !(fields[key] is NSNull) {
                guard let number = fields[key] as? NSNumber, !isBoolean(number),
                      number.doubleValue == number.doubleValue.rounded(),
                      abs(number.doubleValue) < 2_147_483_648
                else { throw Invalid(description: "\"\(key)\" must be a whole number") }
                return number.intValue
            }
            return nil
        }
        var payloadText = "{}"
        if let payload = fields["payload"], !(payload is NSNull) {
            guard payload is [String: Any] else { throw Invalid(description: "\"payload\" must be a JSON object") }
            payloadText = String(decoding: try JSONSerialization.data(withJSONObject: payload, options: [.sortedKeys, .withoutEscapingSlashes]), as: UTF8.self)
        }
        return try job(
            prompt: prompt,
            queue: try string("queue"),
            sessionID: try string("sessionId", "session_id"),
            priority: try integer("priority"),
            runAt: try string("runAt", "run_at"),
            maxAttempts: try integer("maxAttempts", "max_attempts") ?? defaultMaxAttempts,
            payload: payloadText,
            userID: try string("userId", "user_id")
        )
    }

    /// Builds and validates a job from already separated values.
    public static func job(
        prompt: String,
        queue: String?,
        sessionID: String?,
        priority: Int?,
        runAt: String?,
        maxAttempts: Int,
        payload: String?,
        userID: String? = nil
    ) throws -> NewJob {
        var session: UUID?
        if let sessionID {
            guard let parsed = UUID(uuidString: sessionID) else { throw Invalid(description: "session id \"\(sessionID)\" is not a UUID") }
            session = parsed
        }
        var user: UUID?
        if let userID {
            guard let parsed = UUID(uuidString: userID) else { throw Invalid(description: "user id \"\(userID)\" is not a UUID") }
            user = parsed
        }
        var due: Date?
        if let runAt {
            guard let parsed = parseDate(runAt) else {
                throw Invalid(description: "run-at \"\(runAt)\" is not an ISO-8601 time such as 2026-01-31T12:00:00Z")
            }
            due = parsed
        }
        let job = NewJob(
            prompt: prompt,
            queue: queue ?? NewJob.defaultQueue,
            sessionID: session,
            payload: payload ?? "{}",
            priority: priority ?? 0,
            runAt: due,
            maxAttempts: maxAttempts,
            userID: user
        )
        do {
            try job.validate()
        } catch let error as JobStoreError {
            if case .invalidJob(let reason) = error { throw Invalid(description: reason) }
            throw error
        }
        return job
    }

    /// ISO-8601 with or without fractional seconds.
    public static func parseDate(_ text: String) -> Date? {
        if let date = try? Date(text, strategy: .iso8601) { return date }
        return try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    /// JSON `true`/`false` also arrive as `NSNumber`; tell them apart by their type encoding.
    static func isBoolean(_ number: NSNumber) -> Bool {
        String(cString: number.objCType) == "c" || String(describing: type(of: number)).contains("Boolean")
    }
}
