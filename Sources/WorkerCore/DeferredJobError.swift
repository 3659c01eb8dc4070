/// An error a handler throws when the job cannot run on this worker *yet*, through no fault of
/// the job's nor of this worker's: what it needs is held by another (its session's workspace,
/// still locked by a worker that runs an earlier attempt of the turn after its lease lapsed).
///
/// The processor puts the job back as pending, to be claimed again after ``retryAfter`` (the
/// worker's lease duration when `nil`: the holder notices its lost lease within a third of
/// one), without using an attempt. Counted as a failed attempt, as before, three such tries a
/// second apart failed a session's turn for good while its first attempt still ran elsewhere.
public protocol DeferredJobError: Error {
    /// `true`: run it later instead of failing the attempt.
    var isDeferred: Bool { get }
    /// How long to wait before the job is claimed again; `nil`: the worker's lease duration.
    var retryAfter: Duration? { get }
}
