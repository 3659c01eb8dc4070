import Logging

/// Installs the worker's log handler for the whole process, once, before any logger exists.
public enum LoggingSetup {
    /// Bootstraps swift-log with the JSON or pretty handler at `level` (pretty lines in colour
    /// on a terminal, unless `noColour`: `NO_COLOR`, which `.env` may set as well).
    public static func bootstrap(format: LogFormat, level: Logger.Level, output: LogOutput, noColour: Bool = false) {
        let colour = !noColour && output.isTerminal
        LoggingSystem.bootstrap { label in
            switch format {
            case .json: JSONLogHandler(label: label, level: level, output: output)
            case .pretty: PrettyLogHandler(label: label, level: level, output: output, colour: colour)
            }
        }
    }
}

extension LogHandler {
    /// The handler's metadata, then the provider's, then the event's (later wins), in key order.
    ///
    /// Read in place rather than merged into a new dictionary: a busy worker logs two lines a
    /// job, and the merge showed in its profile.
    func sortedMetadata(_ event: LogEvent) -> [(key: String, value: Logger.MetadataValue)] {
        let own = event.metadata ?? [:]
        let provided = metadataProvider?.get() ?? [:]
        var entries: [(key: String, value: Logger.MetadataValue)] = []
        entries.reserveCapacity(own.count + provided.count + metadata.count)
        for (key, value) in own { entries.append((key, value)) }
        for (key, value) in provided where own[key] == nil { entries.append((key, value)) }
        for (key, value) in metadata where own[key] == nil && provided[key] == nil { entries.append((key, value)) }
        entries.sort { $0.key < $1.key }
        return entries
    }
}
