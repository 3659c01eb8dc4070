import Foundation
import Logging
import SQLiteNIO
import WorkerCore

/// Reading rows into jobs; times are integer milliseconds since the Unix epoch.
extension SQLiteJobStore {
    static func milliseconds(_ date: Date) -> Int {
        Int((date.timeIntervalSince1970 * 1000).rounded())
    }

    static func date(_ milliseconds: Int) -> Date {
        Date(timeIntervalSince1970: Double(milliseconds) / 1000)
    }

    static func decode(_ row: SQLiteRow) throws -> Job {
        let rawID = row.column("id")?.string ?? "?"
        func fail(_ reason: String) -> JobStoreError { .corruptRow(id: rawID, reason: reason) }
        func text(_ name: String) throws -> String {
            guard let value = row.column(name)?.string, row.column(name)?.isNull == false else { throw fail("\(name) is NULL") }
            return value
        }
        func integer(_ name: String) throws -> Int {
            guard let data = row.column(name), case .integer(let value) = data else { throw fail("\(name) is not an integer") }
            return value
        }
        func optionalInteger(_ name: String) throws -> Int? {
            guard let data = row.column(name), !data.isNull else { return nil }
            guard case .integer(let value) = data else { throw fail("\(name) is not an integer") }
            return value
        }
        func optionalText(_ name: String) -> String? {
            guard let data = row.column(name), !data.isNull else { return nil }
            return data.string
        }
        guard let id = UUID(uuidString: rawID) else { throw fail("id is not a UUID") }
        let statusText = try text("status")
        guard let status = JobStatus(rawValue: statusText) else { throw fail("unknown status \(statusText)") }
        var sessionID: UUID?
        if let rawSession = optionalText("session_id") {
            guard let parsed = UUID(uuidString: rawSession) else { throw fail("session_id is not a UUID") }
            sessionID = parsed
        }
        var userID: UUID?
        if let rawUser = optionalText("user_id") {
            guard let parsed = UUID(uuidString: rawUser) else { throw fail("user_id is not a UUID") }
            userID = parsed
        }
        return Job(
            id: id,
            queue: try text("queue"),
            sessionID: sessionID,
            prompt: try text("prompt"),
            payload: try text("payload"),
            status: status,
            priority: Int(try integer("priority")),
            runAt: date(try integer("run_at")),
            attempts: Int(try integer("attempts")),
            maxAttempts: Int(try integer("max_attempts")),
            lastError: optionalText("last_error"),
            result: optionalText("result"),
            createdAt: date(try integer("created_at")),
            startedAt: try optionalInteger("started_at").map(date),
            completedAt: try optionalInteger("completed_at").map(date),
            lockedBy: optionalText("locked_by"),
            leaseExpiresAt: try optionalInteger("lease_expires_at").map(date),
            heldBySession: try integer("held_by_session") != 0,
            blocksSession: try integer("blocks_session") != 0,
            usage: JobUsage(
                inputTokens: Int64(try integer("input_tokens")), outputTokens: Int64(try integer("output_tokens")),
                costUSD: row.column("cost_usd")?.double ?? 0, cpuSeconds: row.column("cpu_seconds")?.double ?? 0,
                peakMemoryBytes: Int64(row.column("peak_memory_bytes")?.integer ?? 0), runSeconds: row.column("run_seconds")?.double ?? 0),
            userID: userID
        )
    }
}
