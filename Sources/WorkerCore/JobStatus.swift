/// The life-cycle state of a job.
///
/// ```
/// pending ──claim──▶ processing ──▶ completed
///    ▲                   │  │
///    └──retry / release──┘  └──────▶ failed (attempts used up)
/// pending / processing ──cancel──▶ cancelled
/// ```
public enum JobStatus: String, Sendable, Hashable, Codable, CaseIterable, CustomStringConvertible {
    /// Waiting to be claimed once `runAt` has passed.
    case pending
    /// Claimed by a worker that holds its lease.
    case processing
    /// Finished successfully; `result` holds the handler's output.
    case completed
    /// Failed on its last allowed attempt; `lastError` holds the reason.
    case failed
    /// Cancelled by an operator; never run again unless retried.
    case cancelled

    /// `true` for the states a job never leaves by itself.
    public var isFinal: Bool {
        switch self {
        case .completed, .failed, .cancelled: true
        case .pending, .processing: false
        }
    }

    public var description: String { rawValue }
}
