import Foundation
import Logging

/// Errors a ``JobStore`` reports for requests that cannot be carried out.
public enum JobStoreError: Error, Sendable, Hashable, CustomStringConvertible {
    /// No job has this id.
    case jobNotFound(UUID)
    /// The job is in a state the action does not apply to.
    case invalidTransition(id: UUID, from: JobStatus, action: String)
    /// A job to enqueue is not valid.
    case invalidJob(String)
    /// A row could not be read as a job (hand-edited data).
    case corruptRow(id: String, reason: String)
    /// The database's schema is newer than this worker understands.
    case schemaTooNew(found: Int, supported: Int)
    /// The database refused a value of the request for what it is (a NUL byte in text, `\u0000`
    /// in JSON, a value over a size limit): retrying the same request cannot succeed, while the
    /// same request without that value can (SQLSTATE classes 22 and 54 on PostgreSQL,
    /// `SQLITE_TOOBIG` on SQLite).
    case valueRejected(String)
    /// The database user lacks a privilege the request needs (SQLSTATE 42501), or an object the
    /// worker needs is missing while it may not create it (`AUTO_MIGRATE=false`).
    case notPermitted(String)
    /// An enqueue whose commit was sent and never answered (the connection was lost), and whose
    /// jobs the store could not then look for: they may be stored. Enqueuing them again may
    /// make them twice; look for the first first.
    case enqueueOutcomeUnknown(firstID: UUID, count: Int, reason: String)

    public var description: String {
        switch self {
        case .jobNotFound(let id):
            "no job with id \(id.lowercasedText)"
        case .invalidTransition(let id, let from, let action):
            from == .cancelled && action == "retry"
                ? "cannot retry job \(id.lowercasedText) yet: it was cancelled while running and its worker is still stopping its command; try again in a few seconds"
                : "cannot \(action) job \(id.lowercasedText): it is \(from)"
        case .invalidJob(let reason):
            "invalid job: \(reason)"
        case .corruptRow(let id, let reason):
            "job row \(id) cannot be read: \(reason)"
        case .schemaTooNew(let found, let supported):
            "the database schema is version \(found) but this worker supports up to \(supported); upgrade the worker"
        case .valueRejected(let message):
            "the database refused a value: \(message)"
        case .notPermitted(let message):
            message
        case .enqueueOutcomeUnknown(let first, let count, let reason):
            "the database did not answer the commit of \(count) jobs (\(reason)), nor could they be looked for afterwards: they may have been stored."
                + " Look for job \(first.lowercasedText) (worker jobs show) before enqueuing them again"
        }
    }
}

extension Sequence {
    /// Decodes rows into jobs for listings, skipping (and logging) rows that cannot be read:
    /// a row edited by hand into something unreadable must not hide all the others.
    public func jobsSkippingUnreadable(logger: Logger, _ decode: (Element) throws -> Job) -> [Job] {
        compactMap { row in
            do {
                return try decode(row)
            } catch {
                logger.warning("Job row cannot be read; skipped", metadata: ["error": "\(error)"])
                return nil
            }
        }
    }
}
