import Foundation

/// One entry of a job's live event stream (docs/WORKER_SERVICE.md, "Job events"): a line the
/// agent printed, or a change of the job's state that the worker reports.
///
/// A job's events are numbered by ``sequence`` from 1, across all its attempts, so that a
/// reader that saw up to `n` resumes with the events after `n`, with no gap and no duplicate.
public struct JobEvent: Sendable, Hashable {
    /// What an event is. Open to kinds this worker does not make (written by other programs).
    public struct Kind: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// The worker's report of the job's state: `{"status": "claimed" | "started" | ...}`.
        public static let status = Kind(rawValue: "status")
        /// A line of standard output that is a JSON object (stream-json, JSONL), as printed.
        public static let message = Kind(rawValue: "message")
        /// Any other line of standard output: `{"text": ...}`.
        public static let output = Kind(rawValue: "output")
        /// A line of standard error: `{"text": ...}`.
        public static let log = Kind(rawValue: "log")
        /// The attempt reached `JOB_EVENTS_LIMIT`: what follows is only counted.
        public static let truncated = Kind(rawValue: "truncated")
    }

    public var jobID: UUID
    /// The event's number within its job: 1, 2, 3, ... over all attempts.
    public var sequence: Int64
    public var attempt: Int
    /// When the database stored it.
    public var time: Date
    public var kind: Kind
    /// A JSON object, as text.
    public var data: String

    /// The events table beside a jobs table: `coding_jobs` -> `coding_job_events` (a trailing
    /// `s` dropped), `queue` -> `queue_events`.
    public static func tableName(forJobsTable table: String) -> String {
        (table.hasSuffix("s") && table.count > 1 ? String(table.dropLast()) : table) + "_events"
    }

    public init(jobID: UUID, sequence: Int64, attempt: Int, time: Date, kind: Kind, data: String) {
        self.jobID = jobID
        self.sequence = sequence
        self.attempt = attempt
        self.time = time
        self.kind = kind
        self.data = data
    }
}

/// An event a worker writes for a job it runs: stored only while its lease holds, and only
/// once (a write repeated after a lost answer finds it stored and skips it).
public struct NewJobEvent: Sendable, Hashable {
    public var lease: Lease
    public var sequence: Int64
    public var kind: JobEvent.Kind
    /// A JSON object, as text.
    public var data: String

    public init(lease: Lease, sequence: Int64, kind: JobEvent.Kind, data: String) {
        self.lease = lease
        self.sequence = sequence
        self.kind = kind
        self.data = data
    }

    /// The bytes an event with `data` holds in a write buffer (its share of the recorder's bound).
    static func bufferedBytes(data: String) -> Int { data.utf8.count + 64 }
}
