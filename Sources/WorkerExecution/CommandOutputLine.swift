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
        if let text = jsonObject(line) {
            // Only a final message reports usage: the others are not parsed at all.
            if mayReportUsage(line.bytes), let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any],
               let usage = usage(in: object) {
                events.addUsage(usage)
            }
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
    /// store (``JSONSyntax``: PostgreSQL refuses `\u0000` in JSON, so such a line stays text).
    static func jsonObject(_ line: OutputLines.Line) -> String? {
        guard line.cutBytes == 0 else { return nil }
        let bytes = line.bytes
        guard let first = bytes.firstIndex(where: { !isSpace($0) }), let last = bytes.lastIndex(where: { !isSpace($0) }),
              bytes[first] == UInt8(ascii: "{"), bytes[last] == UInt8(ascii: "}")
        else { return nil }
        let object = bytes[first...last]
        guard object.withUnsafeBufferPointer({ JSONSyntax.isStorableObject($0) }) else { return nil }
        return String(validating: object, as: UTF8.self)
    }

    /// Whether the line may be a message ``usage(in:)`` reads (a cheap byte search, so that
    /// other messages are never parsed).
    static func mayReportUsage(_ bytes: [UInt8]) -> Bool {
        contains(bytes, #""result""#) || contains(bytes, #""turn.completed""#)
    }

    private static func contains(_ bytes: [UInt8], _ needle: StaticString) -> Bool {
        let count = needle.utf8CodeUnitCount
        guard bytes.count >= count else { return false }
        let word = UnsafeBufferPointer(start: needle.utf8Start, count: count)
        return bytes.withUnsafeBufferPointer { haystack in
            var start = 0
            while start <= haystack.count - count {
                if haystack[start] == word[0], memcmp(haystack.baseAddress! + start, word.baseAddress!, count) == 0 { return true }
                start += 1
            }
            return false
        }
    }

    /// What a final message reports spent: Claude Code's `result` message (`usage`: input tokens
    /// are its `input_tokens` plus both cache counts, which Anthropic reports apart; and
    /// `total_cost_usd`), or Codex's `turn.completed` (`usage`: its `input_tokens` already include
    /// the cached ones). Other messages report nothing (Claude's per-message usage repeats in its
    /// result; counting both would count twice).
    ///
    /// The command prints these numbers, so each is taken only within sense: negative ones and
    /// others that are no count (a string, `1e300`) count as 0 and each count is at most
    /// ``maximumTokens``, a cost at most ``maximumCostUSD`` (before, `Int64(1e300)` stopped the
    /// whole worker, and large counts overflowed the job's sums).
    static func usage(in object: [String: Any]) -> JobUsage? {
        func number(_ value: Any?, max limit: Double) -> Double {
            guard let value = (value as? NSNumber)?.doubleValue, value.isFinite, value > 0 else { return 0 }
            return min(value, limit)
        }
        func tokens(_ value: Any?) -> Double { number(value, max: Double(maximumTokens)) }
        let usage = object["usage"] as? [String: Any] ?? [:]
        switch object["type"] as? String {
        case "result":
            let input = min(tokens(usage["input_tokens"]) + tokens(usage["cache_creation_input_tokens"]) + tokens(usage["cache_read_input_tokens"]), Double(maximumTokens))
            return JobUsage(
                inputTokens: Int64(input), outputTokens: Int64(tokens(usage["output_tokens"])), costUSD: number(object["total_cost_usd"], max: maximumCostUSD))
        case "turn.completed":
            return JobUsage(inputTokens: Int64(tokens(usage["input_tokens"])), outputTokens: Int64(tokens(usage["output_tokens"])), costUSD: 0)
        default:
            return nil
        }
    }

    /// The most tokens one message may report (2^40, about a trillion).
    static let maximumTokens: Int64 = 1 << 40
    /// The most one message may report spent, in US dollars.
    static let maximumCostUSD = 1_000_000.0

    private static func isSpace(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\r")
    }

    static func isBlank(_ bytes: [UInt8]) -> Bool {
        bytes.allSatisfy(isSpace)
    }
}
