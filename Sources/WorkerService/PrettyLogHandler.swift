import Foundation
import Logging

/// Human-readable log lines for development: `06:33:02.123 INFO  message key=value ...`,
/// coloured by level when writing to a terminal.
///
/// Messages and values carry text of jobs (a command's standard error in a failure, a prompt in
/// an error): their control characters are shown as escapes (``TerminalText``), so a command
/// cannot print a line break and a forged line, or sequences that clear or retitle the
/// operator's terminal; a value with a space, `=` or `"` is quoted.
public struct PrettyLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let output: LogOutput
    private let colour: Bool

    /// - Parameter colour: whether lines are coloured (`nil`: when `output` is a terminal and
    ///   the process's `NO_COLOR` is unset or empty).
    public init(
        label: String, level: Logger.Level, output: LogOutput = .standardOutput, colour: Bool? = nil, metadataProvider: Logger.MetadataProvider? = nil
    ) {
        self.label = label
        self.logLevel = level
        self.output = output
        self.colour = colour ?? (output.isTerminal && (getenv("NO_COLOR").map { $0.pointee == 0 } ?? true))
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let level = event.level.rawValue.uppercased().padding(toLength: 8, withPad: " ", startingAt: 0)
        var line = LogTimestamp.clock(Date()) + " " + paint(level, Self.colourCode(event.level)) + TerminalText.escaped(event.message.description)
        for (key, value) in sortedMetadata(event) {
            line += " " + paint(key + "=", "2") + Self.render(value)
        }
        output.write(line: line)
    }

    private func paint(_ text: String, _ code: String) -> String {
        colour ? "\u{1B}[\(code)m\(text)\u{1B}[0m" : text
    }

    static func colourCode(_ level: Logger.Level) -> String {
        switch level {
        case .trace, .debug: "90"
        case .info: "32"
        case .notice: "36"
        case .warning: "33"
        case .error: "31"
        case .critical: "1;31"
        }
    }

    static func render(_ value: Logger.MetadataValue) -> String {
        switch value {
        case .string(let text):
            quoted(TerminalText.escaped(text))
        case .stringConvertible(let convertible):
            quoted(TerminalText.escaped(convertible.description))
        case .array(let values):
            "[" + values.map(render).joined(separator: ", ") + "]"
        case .dictionary(let dictionary):
            "{" + dictionary.keys.sorted().map { "\(TerminalText.escaped($0))=\(render(dictionary[$0]!))" }.joined(separator: ", ") + "}"
        }
    }

    /// `text` in double quotes (its own written `\"`) when it is empty or holds a space, `=` or `"`.
    private static func quoted(_ text: String) -> String {
        guard text.isEmpty || text.contains(where: { $0 == " " || $0 == "=" || $0 == "\"" }) else { return text }
        return "\"" + text.replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }
}
