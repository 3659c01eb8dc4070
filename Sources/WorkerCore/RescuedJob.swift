import Foundation

/// A job whose lease expired (its worker died or stalled), returned by ``JobStore/rescueExpiredLeases()``.
public struct RescuedJob: Sendable, Hashable {
    public var id: UUID
    public var queue: String
    public var sessionID: UUID?
    /// The worker that held the expired lease.
    public var previousWorker: String?
    /// The attempt that was lost.
    public var attempt: Int
    /// `pending` when attempts remain, otherwise `failed`.
    public var newStatus: JobStatus

    public init(id: UUID, queue: String, sessionID: UUID? = nil, previousWorker: String?, attempt: Int, newStatus: JobStatus) {
        self.id = id
        self.queue = queue
        self.sessionID = sessionID
        self.previousWorker = previousWorker
        self.attempt = attempt
        self.newStatus = newStatus
    }
}
