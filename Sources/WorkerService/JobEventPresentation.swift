import Foundation
import WorkerCore

/// How readers show job events: one JSON object a line (`--json`, and the event stream's
/// `data:`), or a line of text for a terminal.
public enum JobEventPresentation {
    /// `{"seq":…,"attempt":…,"time":…,"kind":…,"data":{…}}`, the data embedded as stored.
    public static func jsonLine(_ event: JobEvent) -> String {
        var line: [UInt8] = []
        line.reserveCapacity(event.data.utf8.count + 120)
        line.append(contentsOf: #"{"jobId":""#.utf8)
        line.append(contentsOf: event.jobID.lowercasedText.utf8)
        line.append(contentsOf: #"","seq":\#(event.sequence),"attempt":\#(event.attempt),"time":""#.utf8)
        LogTimestamp.appendISO8601(event.time, to: &line)
        line.append(contentsOf: #"","kind":"#.utf8)
        JSONText.appendString(event.kind.rawValue, to: &line)
        line.append(contentsOf: #","data":"#.utf8)
        // One line, whatever the data: a line break in JSON can only be whitespace between its
        // tokens (never inside a string), and PostgreSQL's jsonb drops it, but SQLite keeps a
        // `message` object as the agent printed it, and a raw CR or LF there cut an SSE `data:`
        // field (and a JSONL line) in two.
        for byte in event.data.utf8 {
            line.append(byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") ? UInt8(ascii: " ") : byte)
        }
        line.append(UInt8(ascii: "}"))
        return String(decoding: line, as: UTF8.self)
    }

    /// `SEQ TIME KIND what`: the text of `output` and `log` events, the state and details of
    /// `status` events, `message` objects as printed; control characters escaped.
    public static func textLine(_ event: JobEvent) -> String {
        let object = (try? JSONSerialization.jsonObject(with: Data(event.data.utf8))) as? [String: Any]
        let what: String
        switch event.kind {
        case .output, .log:
            what = (object?["text"] as? String) ?? event.data
        case .status:
            var fields = object ?? [:]
            let status = fields.removeValue(forKey: "status") as? String ?? "?"
            let details = fields.filter { key, value in
                // Zero counts say nothing.
                !(key == "droppedEvents" && (value as? Int) == 0)
            }.sorted { $0.key < $1.key }.map { "\($0.key)=\(describe($0.value))" }
            what = ([status] + details).joined(separator: " ")
        default:
            what = event.data
        }
        let time = LogTimestamp.iso8601(event.time)
        return "\(event.sequence) \(time) \(event.kind.rawValue.count >= 8 ? event.kind.rawValue : event.kind.rawValue.padding(toLength: 8, withPad: " ", startingAt: 0)) \(TerminalText.escaped(what))"
    }

    /// Whether `event` is the worker's report that the job ended (completed, failed, cancelled).
    public static func endsJob(_ event: JobEvent) -> Bool {
        guard event.kind == .status,
              let object = (try? JSONSerialization.jsonObject(with: Data(event.data.utf8))) as? [String: Any],
              let status = object["status"] as? String
        else { return false }
        return ["completed", "failed", "cancelled"].contains(status)
    }

    private static func describe(_ value: Any) -> String {
        if let text = value as? String { return text.contains(" ") ? "\"\(text)\"" : text }
        return "\(value)"
    }
}
