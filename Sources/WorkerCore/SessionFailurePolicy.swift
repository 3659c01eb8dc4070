/// What a failed turn does to the turns of its session queued after it (`SESSION_ON_FAILURE`).
///
/// Jobs with the same session id run one at a time, in the order they were enqueued
/// (docs/WORKER_SERVICE.md, "Sessions"); this decides whether a turn that failed for good lets
/// the next one start.
public enum SessionFailurePolicy: String, Sendable, Hashable, CaseIterable {
    /// The next turn runs (the default): a user's next prompt is not stuck behind a failure.
    case `continue`
    /// Later turns stay pending until the failed turn is retried or cancelled: for agents whose
    /// next turn makes no sense on top of a half-done one.
    case block
}
