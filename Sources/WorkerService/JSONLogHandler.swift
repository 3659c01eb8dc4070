import Foundation
import Logging
import WorkerCore

/// Writes one JSON object per line: `time` (ISO-8601, milliseconds, UTC), `level`, `msg`,
/// `label`, then the metadata keys. Whole numbers and booleans in metadata stay numbers and
/// booleans; nested metadata becomes nested JSON.
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let output: LogOutput

    public init(label: String, level: Logger.Level, output: LogOutput = .standardOutput, metadataProvider: Logger.MetadataProvider? = nil) {
        self.label = label
        self.logLevel = level
        self.output = output
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        // Built as bytes and written with one call: a busy worker logs two lines a job, and
        // String appends and Foundation formatting once cost it a quarter of its CPU time.
        var line: [UInt8] = []
        line.reserveCapacity(320)
        line.append(contentsOf: #"{"time":""#.utf8)
        LogTimestamp.appendISO8601(Date(), to: &line)
        line.append(contentsOf: #"","level":""#.utf8)
        line.append(contentsOf: event.level.rawValue.utf8)
        line.append(contentsOf: #"","msg":"#.utf8)
        JSONText.appendString(event.message.description, to: &line)
        line.append(contentsOf: #","label":"#.utf8)
        JSONText.appendString(label, to: &line)
        for (key, value) in sortedMetadata(event) where key != "time" && key != "level" && key != "msg" && key != "label" {
            line.append(UInt8(ascii: ","))
            JSONText.appendString(key, to: &line)
            line.append(UInt8(ascii: ":"))
            Self.append(value, to: &line)
        }
        line.append(UInt8(ascii: "}"))
        output.write(line: &line)
    }

    static func append(_ value: Logger.MetadataValue, to line: inout [UInt8]) {
        switch value {
        case .string(let text):
            JSONText.appendString(text, to: &line)
        case .stringConvertible(let convertible):
            // A value that prints as a JSON number or a boolean stays one (attempt counts,
            // durations, flags); anything else is a string. Read from its text, not by casting
            // to each number type: dynamic casts showed in the profile.
            let text = convertible.description
            if JSONText.isNumber(text) || ((text == "true" || text == "false") && convertible is Bool) {
                line.append(contentsOf: text.utf8)
            } else {
                JSONText.appendString(text, to: &line)
            }
        case .array(let values):
            line.append(UInt8(ascii: "["))
            for (index, element) in values.enumerated() {
                if index > 0 { line.append(UInt8(ascii: ",")) }
                append(element, to: &line)
            }
            line.append(UInt8(ascii: "]"))
        case .dictionary(let dictionary):
            line.append(UInt8(ascii: "{"))
            for (index, key) in dictionary.keys.sorted().enumerated() {
                if index > 0 { line.append(UInt8(ascii: ",")) }
                JSONText.appendString(key, to: &line)
                line.append(UInt8(ascii: ":"))
                append(dictionary[key]!, to: &line)
            }
            line.append(UInt8(ascii: "}"))
        }
    }

}

/// Timestamp formatting shared by the log handlers and the health endpoint.
public enum LogTimestamp {
    /// `2026-11-29T06:33:02.123Z` (UTC, milliseconds). Formatted by hand: this runs for every
    /// log line, and Foundation's format styles cost microseconds each.
    public static func iso8601(_ date: Date) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(24)
        appendISO8601(date, to: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// ``iso8601(_:)`` appended to `bytes`, digit by digit.
    public static func appendISO8601(_ date: Date, to bytes: inout [UInt8]) {
        let milliseconds = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
        var seconds = time_t(milliseconds / 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func digits(_ value: Int, _ width: Int) {
            var divisor = 1
            for _ in 1..<width { divisor *= 10 }
            var value = value
            while divisor > 0 {
                bytes.append(UInt8(ascii: "0") + UInt8(value / divisor % 10))
                value %= divisor
                divisor /= 10
            }
        }
        digits(Int(parts.tm_year) + 1900, 4)
        bytes.append(UInt8(ascii: "-"))
        digits(Int(parts.tm_mon) + 1, 2)
        bytes.append(UInt8(ascii: "-"))
        digits(Int(parts.tm_mday), 2)
        bytes.append(UInt8(ascii: "T"))
        digits(Int(parts.tm_hour), 2)
        bytes.append(UInt8(ascii: ":"))
        digits(Int(parts.tm_min), 2)
        bytes.append(UInt8(ascii: ":"))
        digits(Int(parts.tm_sec), 2)
        bytes.append(UInt8(ascii: "."))
        digits(Int(milliseconds % 1000), 3)
        bytes.append(UInt8(ascii: "Z"))
    }

    /// `06:33:02.123`
    static func clock(_ date: Date) -> String {
        let full = iso8601(date)
        guard let t = full.firstIndex(of: "T") else { return full }
        return String(full[full.index(after: t)...].prefix(12))
    }
}
