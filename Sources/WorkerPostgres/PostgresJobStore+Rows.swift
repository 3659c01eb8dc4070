import Foundation
import Logging
import PostgresNIO
import WorkerCore

/// Reading rows into jobs.
extension PostgresJobStore {
    /// A row of the claim (``PostgresSchema/claimColumns``), read cell by cell in one pass, each
    /// cell with its concrete type (PostgresNIO's variadic `decode` resolved generic metadata at
    /// run time, a sizeable share of the claim's CPU).
    static func decodeClaimed(_ row: PostgresRow, workerID: String) throws -> ClaimedJob {
        var cells = row.makeIterator()
        var id: UUID?
        func next<T: PostgresDecodable>(_ type: T.Type) throws -> T {
            guard let cell = cells.next() else {
                throw JobStoreError.corruptRow(id: id?.lowercasedText ?? "unknown", reason: "the claim returned too few columns")
            }
            do {
                return try cell.decode(T.self)
            } catch {
                throw JobStoreError.corruptRow(id: id?.lowercasedText ?? "unknown", reason: "\(cell.columnName) cannot be read as \(T.self)")
            }
        }
        let jobID = try next(UUID.self)
        id = jobID
        let queue = try next(String.self), sessionID = try next(UUID?.self), prompt = try next(String.self)
        let payload = try next(String.self), priority = try next(Int.self), runAt = try next(Date.self)
        let attempts = try next(Int.self), maxAttempts = try next(Int.self), lastError = try next(String?.self)
        let createdAt = try next(Date.self), startedAt = try next(Date.self), leaseExpiresAt = try next(Date.self)
        // The job's last event before this claim; the claim stored `claimed` after it.
        let lastEventSequence = try next(Int64.self) + 1
        let job = Job(
            id: jobID, queue: queue, sessionID: sessionID, prompt: prompt, payload: payload, status: .processing,
            priority: priority, runAt: runAt, attempts: attempts, maxAttempts: maxAttempts, lastError: lastError,
            createdAt: createdAt, startedAt: startedAt, lockedBy: workerID, leaseExpiresAt: leaseExpiresAt
        )
        return ClaimedJob(
            job: job, lease: Lease(jobID: jobID, workerID: workerID, attempt: attempts, expiresAt: leaseExpiresAt),
            lastEventSequence: lastEventSequence)
    }

    static func decode(_ row: PostgresRow) throws -> Job {
        let cells = PostgresRandomAccessRow(row)
        let id = try cells[0].decode(UUID.self)
        func field<T: PostgresDecodable>(_ index: Int, _ type: T.Type) throws -> T {
            do {
                return try cells[index].decode(T.self)
            } catch {
                throw JobStoreError.corruptRow(id: id.lowercasedText, reason: "\(cells[index].columnName) cannot be read as \(T.self)")
            }
        }
        let statusText = try field(5, String.self)
        guard let status = JobStatus(rawValue: statusText) else {
            throw JobStoreError.corruptRow(id: id.lowercasedText, reason: "unknown status \(statusText)")
        }
        return Job(
            id: id,
            queue: try field(1, String.self),
            sessionID: try field(2, UUID?.self),
            prompt: try field(3, String.self),
            payload: try field(4, String.self),
            status: status,
            priority: try field(6, Int.self),
            runAt: try field(7, Date.self),
            attempts: try field(8, Int.self),
            maxAttempts: try field(9, Int.self),
            lastError: try field(10, String?.self),
            result: try field(11, String?.self),
            createdAt: try field(12, Date.self),
            startedAt: try field(13, Date?.self),
            completedAt: try field(14, Date?.self),
            lockedBy: try field(15, String?.self),
            leaseExpiresAt: try field(16, Date?.self),
            heldBySession: try field(17, Bool.self),
            blocksSession: try field(18, Bool.self),
            usage: JobUsage(
                inputTokens: try field(19, Int64.self), outputTokens: try field(20, Int64.self), costUSD: try field(21, Double.self),
                cpuSeconds: try field(22, Double.self), peakMemoryBytes: try field(23, Int64.self), runSeconds: try field(24, Double.self)),
            userID: try field(25, UUID?.self)
        )
    }
}
