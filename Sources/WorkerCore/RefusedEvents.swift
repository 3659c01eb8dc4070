/// The leases whose events a write did not store (``JobStore/appendEvents(_:)``), by reason.
/// Nothing of a refused lease's events in the batch is stored.
public struct RefusedEvents: Sendable, Hashable {
    /// Leases that no longer hold: a rescue, another claim or the end of a cancel came first.
    public var lostLeases: Set<Lease>
    /// Leases that hold, but whose events before the batch are not all stored: the batch would
    /// follow an event the store does not have. An earlier write was answered and never
    /// committed (PostgreSQL stopped, or its commit failed, between the statement's answer and
    /// the commit). Storing the batch would leave a gap in the job's events for good; the
    /// worker gives the attempt up instead, and the job's next attempt numbers its events on
    /// from the last one stored (docs/WORKER_SERVICE.md, "Job events").
    public var brokenStreams: Set<Lease>

    public init(lostLeases: Set<Lease> = [], brokenStreams: Set<Lease> = []) {
        self.lostLeases = lostLeases
        self.brokenStreams = brokenStreams
    }

    /// Nothing refused: every event was stored (or already was).
    public var isEmpty: Bool { lostLeases.isEmpty && brokenStreams.isEmpty }

    /// Every refused lease, whatever the reason.
    public var all: Set<Lease> { lostLeases.union(brokenStreams) }
}
