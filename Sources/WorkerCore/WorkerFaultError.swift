/// An error a handler throws when this worker, not the job, is at fault: the attempt's working
/// directory could not be made (a full disk), its sandbox or control group could not be set up,
/// the program could not be started. The processor gives the job back to the queue without
/// using an attempt, and a worker whose jobs fail so several times in a row stops claiming for
/// a while and is not ready (``JobProcessor/workerFaultsMakingUnready``): before, such a worker
/// failed every job it claimed within milliseconds, faster than the healthy workers could
/// claim them, and used up their attempts.
public protocol WorkerFaultError: Error {
    /// `true`: this worker could not run the job at all.
    var isWorkerFault: Bool { get }
}
