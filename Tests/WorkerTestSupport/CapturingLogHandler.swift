import Logging
import Synchronization

/// Keeps each message with its metadata as one line of text.
public final class LogMessages: Sendable {
    private let lines = Mutex<[String]>([])
    public var all: [String] { lines.withLock { $0 } }
    public init() {}
    public func append(_ line: String) { lines.withLock { $0.append(line) } }
}

/// A log handler that keeps what is logged, for tests that check what a component says.
public struct CapturingLogHandler: LogHandler {
    public let messages: LogMessages
    public var logLevel: Logger.Level = .trace
    public var metadata: Logger.Metadata = [:]

    public init(messages: LogMessages) {
        self.messages = messages
    }

    public func log(event: LogEvent) {
        let fields = (event.metadata ?? [:]).merging(metadata) { new, _ in new }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        messages.append(([event.message.description] + fields).joined(separator: " "))
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
}
