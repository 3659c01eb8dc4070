import Logging

/// Installs the worker's log handler for the whole process, once, before any logger exists.
public enum LoggingSetup {
    /// Bootstraps swift-log with the JSON or pretty handler at `level`.
    public static func bootstrap(format: LogFormat, level: Logger.Level, output: LogOutput) {
        LoggingSystem.bootstrap { label in
            switch format {
            case .json: JSONLogHandler(label: label, level: level, output: output)
            case .pretty: PrettyLogHandler(label: label, level: level, output: output)
            }
        }
    }
}

extension LogHandler {
    /// The handler's metadata, then the provider's, then the event's: later wins.
    func mergedMetadata(_ event: LogEvent) -> Logger.Metadata {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { $1 } }
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        return merged
    }
}
