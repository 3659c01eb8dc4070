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
        if let object = jsonObject(line) {
            await events.emit(.message, json: object)
            return object
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
        guard line.cutBytes == 0 else { return nil }
        let bytes = line.bytes
        guard let first = bytes.firstIndex(where: { !isSpace($0) }), let last = bytes.lastIndex(where: { !isSpace($0) }),
              bytes[first] == UInt8(ascii: "{"), bytes[last] == UInt8(ascii: "}"),
              let text = String(validating: bytes[first...last], as: UTF8.self), !text.contains("\\u0000"),
              (try? JSONSerialization.jsonObject(with: Data(text.utf8))) is [String: Any]
        else { return nil }
        return text
    }

    private static func isSpace(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\r")
    }

    static func isBlank(_ bytes: [UInt8]) -> Bool {
        bytes.allSatisfy(isSpace)
    }
}
