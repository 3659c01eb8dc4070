/// An error a handler throws that may know that another attempt cannot succeed: input the
/// handler cannot read, or a command exiting with a status listed as permanent
/// (`JOB_PERMANENT_EXIT_CODES`). The processor then fails the job at once instead of retrying
/// it with backoff until `max_attempts`.
public protocol PermanentJobError: Error {
    /// `true`: retrying cannot fix this failure.
    var isPermanent: Bool { get }
}

extension EchoHandlerError: PermanentJobError {
    public var isPermanent: Bool {
        if case .invalidOptions = self { return true }
        return false
    }
}
