import Foundation
import Logging

/// Runs one attempt of a job.
///
/// Return the result as JSON text to complete the job; throw to fail the attempt (the
/// processor then applies the ``RetryPolicy``). The handler's task is cancelled when the
/// worker shuts down past its timeout or the job is cancelled: return or throw promptly then.
/// Errors are recorded as `last_error` using their `description`.
public protocol JobHandler: Sendable {
    func handle(_ job: ClaimedJob, context: JobContext) async throws -> String
}

/// What a handler gets besides the job.
public struct JobContext: Sendable {
    /// What the contexts of one processor's jobs share.
    final class Base: Sendable {
        let logger: Logger
        let workerID: String

        init(logger: Logger, workerID: String) {
            self.logger = logger
            self.workerID = workerID
        }
    }

    private let base: Base
    private let jobID: UUID?
    private let sessionID: UUID?
    private let attempt: Int
    /// Where the attempt's events go; `nil` outside a processor (events are then dropped).
    public let events: JobEventStream?

    /// A context whose logger is used as given, and whose events go nowhere.
    public init(logger: Logger, workerID: String) {
        self.base = Base(logger: logger, workerID: workerID)
        self.jobID = nil
        self.sessionID = nil
        self.attempt = 0
        self.events = nil
    }

    /// A context for one attempt; its logger carries the job's metadata, built only when used.
    init(processor base: Base, job: ClaimedJob, events: JobEventStream?) {
        self.base = base
        self.jobID = job.job.id
        self.sessionID = job.job.sessionID
        self.attempt = job.lease.attempt
        self.events = events
    }

    /// Emits `{"text": text}` on the job's live event stream (`output` for what the agent says,
    /// `log` for diagnostics). Waits while the worker's event buffer is full.
    public func emit(_ kind: JobEvent.Kind, text: String) async {
        await events?.emit(kind, text: text)
    }

    /// Emits an event whose data is `json`, a JSON object (kind `message` for an agent's
    /// structured messages).
    public func emit(_ kind: JobEvent.Kind, json: String) async {
        await events?.emit(kind, json: json)
    }

    /// The id of the worker running the job.
    public var workerID: String { base.workerID }

    /// A logger carrying `jobId`, `sessionId`, `attempt` and `workerId`.
    public var logger: Logger {
        guard let jobID else { return base.logger }
        var logger = base.logger
        for (key, value) in JobContext.metadata(jobID: jobID, sessionID: sessionID, attempt: attempt) {
            logger[metadataKey: key] = value
        }
        return logger
    }

    /// The metadata every log line about a job carries (besides `workerId`, on the base logger).
    ///
    /// - Parameter room: how many more keys the caller adds (the dictionary is sized once: growing
    ///   it for every log line showed in a busy worker's profile).
    static func metadata(jobID: UUID, sessionID: UUID?, attempt: Int, room: Int = 0) -> Logger.Metadata {
        var metadata = Logger.Metadata(minimumCapacity: 3 + room)
        metadata["jobId"] = .string(jobID.lowercasedText)
        metadata["sessionId"] = .string(sessionID?.lowercasedText ?? "")
        metadata["attempt"] = .stringConvertible(attempt)
        return metadata
    }
}
