/// What a lease renewal found.
public enum LeaseState: Sendable, Hashable {
    /// Still this worker's; extended.
    case held
    /// The job was cancelled while it ran: stop the handler.
    case cancelled
    /// The lease is gone (expired and rescued, or taken by another worker): stop, write nothing.
    case lost
}
