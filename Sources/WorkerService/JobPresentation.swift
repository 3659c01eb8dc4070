import Foundation
import WorkerCore

/// How the CLI shows jobs and statistics: JSON objects keyed by the table's column names, or text.
public enum JobPresentation {
    /// A job as a JSON-ready dictionary; `payload` and `result` are embedded as JSON.
    public static func jsonObject(_ job: Job) -> [String: Any] {
        func date(_ value: Date?) -> Any { value.map { LogTimestamp.iso8601($0) } ?? NSNull() }
        func embedded(_ text: String?) -> Any {
            guard let text else { return NSNull() }
            return (try? JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])) ?? text
        }
        return [
            "id": job.id.lowercasedText,
            "queue": job.queue,
            "session_id": job.sessionID.map { $0.lowercasedText } ?? NSNull(),
            "user_id": job.userID.map { $0.lowercasedText } ?? NSNull(),
            "prompt": job.prompt,
            "payload": embedded(job.payload),
            "status": job.status.rawValue,
            "priority": job.priority,
            "run_at": date(job.runAt),
            "attempts": job.attempts,
            "max_attempts": job.maxAttempts,
            "last_error": job.lastError ?? NSNull(),
            "result": embedded(job.result),
            "created_at": date(job.createdAt),
            "started_at": date(job.startedAt),
            "completed_at": date(job.completedAt),
            "locked_by": job.lockedBy ?? NSNull(),
            "lease_expires_at": date(job.leaseExpiresAt),
            "held_by_session": job.heldBySession,
            "blocks_session": job.blocksSession,
            "input_tokens": Int(job.usage.inputTokens),
            "output_tokens": Int(job.usage.outputTokens),
            "cost_usd": job.usage.costUSD,
            "cpu_seconds": job.usage.cpuSeconds,
            "peak_memory_bytes": Int(job.usage.peakMemoryBytes),
            "run_seconds": job.usage.runSeconds,
        ]
    }

    /// Statistics as the JSON object of `worker stats --json` (the monitor's keys).
    public static func jsonObject(_ stats: QueueStats) -> [String: Any] {
        [
            "pending": stats.pending,
            "processing": stats.processing,
            "completed": stats.completed,
            "failed": stats.failed,
            "cancelled": stats.cancelled,
            "oldestPendingAgeSeconds": stats.oldestPendingAgeSeconds.map { ($0 * 1000).rounded() / 1000 } ?? NSNull(),
            "successRate": stats.successRate ?? NSNull(),
            "sessions": [
                "running": stats.sessions.running,
                "waiting": stats.sessions.waiting,
                "waitingTurns": stats.sessions.waitingTurns,
                "blocked": stats.sessions.blocked,
                "oldestWaitSeconds": stats.sessions.oldestWaitSeconds.map { ($0 * 1000).rounded() / 1000 } ?? NSNull(),
            ] as [String: Any],
        ]
    }

    /// Serialises with sorted keys; pretty-printed for one object, compact otherwise.
    public static func json(_ value: Any, pretty: Bool = true) -> String {
        // Fragments allowed: a scalar is written as itself rather than stopping the process.
        var options: JSONSerialization.WritingOptions = [.sortedKeys, .withoutEscapingSlashes, .fragmentsAllowed]
        if pretty { options.insert(.prettyPrinted) }
        let data = (try? JSONSerialization.data(withJSONObject: value, options: options)) ?? Data("null".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    /// A fixed-width table of jobs for a terminal; control characters in the cells are escaped
    /// (``TerminalText``), newlines in the prompt become spaces.
    public static func table(_ jobs: [Job]) -> String {
        var rows = [["ID", "STATUS", "QUEUE", "PRIO", "TRIES", "CREATED", "PROMPT"]]
        for job in jobs {
            let prompt = TerminalText.escaped(job.prompt.replacingOccurrences(of: "\n", with: " "))
            rows.append([
                job.id.lowercasedText,
                job.status.rawValue,
                TerminalText.escaped(job.queue),
                "\(job.priority)",
                "\(job.attempts)/\(job.maxAttempts)",
                LogTimestamp.iso8601(job.createdAt),
                prompt.count > 40 ? String(prompt.prefix(39)) + "…" : prompt,
            ])
        }
        return align(rows)
    }

    /// A session's turns in turn order, with why each pending one waits: the turn it waits
    /// for, or that it is due and next (`worker jobs list --session`).
    public static func sessionTable(_ turns: [Job]) -> String {
        let active = turns.first { turn in
            turn.status == .processing || (turn.status == .pending && !turn.heldBySession)
                || (turn.status == .failed && turn.blocksSession) || (turn.status == .cancelled && turn.leaseExpiresAt != nil)
        }
        var rows = [["TURN", "ID", "STATUS", "TRIES", "CREATED", "WAITS", "PROMPT"]]
        for (index, turn) in turns.enumerated() {
            let prompt = TerminalText.escaped(turn.prompt.replacingOccurrences(of: "\n", with: " "))
            rows.append([
                "\(index + 1)",
                turn.id.lowercasedText,
                turn.status.rawValue,
                "\(turn.attempts)/\(turn.maxAttempts)",
                LogTimestamp.iso8601(turn.createdAt),
                waitReason(turn, active: active),
                prompt.count > 40 ? String(prompt.prefix(39)) + "…" : prompt,
            ])
        }
        return align(rows)
    }

    /// Why a turn is not running, in a few words; `-` for one that runs or has finished.
    static func waitReason(_ turn: Job, active: Job?) -> String {
        switch turn.status {
        case .pending where turn.heldBySession:
            guard let active, active.id != turn.id else { return "for the session's turn to be let through" }
            switch active.status {
            case .failed: return "blocked by failed turn \(active.id.lowercasedText.prefix(8)) (SESSION_ON_FAILURE=block: retry or cancel it)"
            case .cancelled: return "for cancelled turn \(active.id.lowercasedText.prefix(8)) to stop"
            default: return "for turn \(active.id.lowercasedText.prefix(8)) (\(active.status.rawValue))"
            }
        case .pending where turn.runAt > Date():
            return "until \(LogTimestamp.iso8601(turn.runAt)) (retry backoff or run-at)"
        case .pending:
            return "for a free worker (next of its session)"
        case .failed where turn.blocksSession:
            return "- (holds the session)"
        default:
            return "-"
        }
    }

    /// The rows as columns padded to their widest cell (the last column unpadded).
    private static func align(_ rows: [[String]]) -> String {
        let widths = (0..<rows[0].count).map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }

    /// One `key: value` line per field. Control characters are escaped (``TerminalText``);
    /// newlines are kept, so a multi-line prompt or error reads as written.
    public static func details(_ job: Job) -> String {
        let object = jsonObject(job)
        let order = [
            "id", "status", "queue", "session_id", "user_id", "priority", "attempts", "max_attempts", "run_at", "created_at",
            "started_at", "completed_at", "locked_by", "lease_expires_at", "held_by_session", "blocks_session",
            "input_tokens", "output_tokens", "cost_usd", "cpu_seconds", "peak_memory_bytes", "run_seconds", "prompt", "payload", "result",
            "last_error",
        ]
        return order.map { key -> String in
            let value = object[key]!
            let text: String
            switch value {
            case is NSNull: text = "-"
            case let string as String: text = string
            case let flag as Bool: text = "\(flag)"
            case let number as Int: text = "\(number)"
            case let number as Double: text = "\(number)"
            default: text = json(value, pretty: false)
            }
            return "\(key.padding(toLength: 17, withPad: " ", startingAt: 0)) \(TerminalText.escaped(text, keepingNewlines: true))"
        }.joined(separator: "\n")
    }
}
