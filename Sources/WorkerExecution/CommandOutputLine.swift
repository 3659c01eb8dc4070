import Foundation
import WorkerCore

/// A line a job's command printed, as an event of the job's live stream
/// (docs/WORKER_SERVICE.md, "Job events"): on standard output a JSON object is a `message` (the
/// stream-json / JSONL of Claude Code and Codex, kept as printed), anything else `output`; on
/// standard error, `log`. Blank lines are skipped.
enum CommandOutputLine {
    /// Emits `line` of standard output; returns the JSON object it holds, if it is one.
    static func emitStandardOutput(_ line: OutputLines.Line, to events: JobEventStream) async -> String? {
        guard !isBlank(line.bytes) else { return nil }
        if let (text, object) = parsedObject(line) {
            if let usage = usage(in: object) { events.addUsage(usage) }
            await events.emit(.message, json: text)
            return text
        }
        await events.emit(.output, utf8: line.bytes, cutBytes: line.cutBytes)
        return nil
    }

    static func emitStandardError(_ line: OutputLines.Line, to events: JobEventStream) async {
        guard !isBlank(line.bytes) else { return }
        await events.emit(.log, utf8: line.bytes, cutBytes: line.cutBytes)
    }

    /// The line as JSON object text, when it is one whole (not cut) object the database can
    /// store: PostgreSQL refuses `\u0000` in JSON, so such a line stays text.
    static func jsonObject(_ line: OutputLines.Line) -> String? {
        parsedObject(line)?.text
    }

    /// What a final message reports spent: Claude Code's `result` message (`usage`: input tokens
    /// are its `input_tokens` plus both cache counts, which Anthropic reports apart; and
    /// `total_cost_usd`), or Codex's `turn.completed` (`usage`: its `input_tokens` already include
    /// the cached ones). Other messages report nothing (Claude's per-message usage repeats in its
    /// result; counting both would count twice).
    static func usage(in object: [String: Any]) -> JobUsage? {
        func number(_ value: Any?) -> Double { (value as? NSNumber)?.doubleValue ?? 0 }
        let usage = object["usage"] as? [String: Any] ?? [:]
        switch object["type"] as? String {
        case "result":
            let input = number(usage["input_tokens"]) + number(usage["cache_creation_input_tokens"]) + number(usage["cache_read_input_tokens"])
            return JobUsage(inputTokens: Int64(input), outputTokens: Int64(number(usage["output_tokens"])), costUSD: number(object["total_cost_usd"]))
        case "turn.completed":
            return JobUsage(inputTokens: Int64(number(usage["input_tokens"])), outputTokens: Int64(number(usage["output_tokens"])), costUSD: 0)
        default:
            return nil
        }
    }

    /// The line's JSON object, as text and parsed.
    static func parsedObject(_ line: OutputLines.Line) -> (text: String, object: [String: Any])? {
        guard line.cutBytes == 0 else { return nil }
        let bytes = line.bytes
        guard let first = bytes.firstIndex(where: { !isSpace($0) }), let last = bytes.lastIndex(where: { !isSpace($0) }),
              bytes[first] == UInt8(ascii: "{"), bytes[last] == UInt8(ascii: "}"),
              let text = String(validating: bytes[first...last], as: UTF8.self), !text.contains("\\u0000"),
              let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any]
        else { return nil }
        return (text, object)
    }

    private static func isSpace(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\r")
    }

    static func isBlank(_ bytes: [UInt8]) -> Bool {
        bytes.allSatisfy(isSpace)
    }
}
