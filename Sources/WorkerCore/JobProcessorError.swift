/// Misuse of a ``JobProcessor``.
public enum JobProcessorError: Error, CustomStringConvertible {
    case alreadyRunning

    public var description: String {
        switch self {
        case .alreadyRunning: "the job processor is already running; create one per service group"
        }
    }
}
