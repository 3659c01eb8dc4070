/// How readers of a job's stored events page them: by bytes as well as by count, since one
/// event may be up to `JOB_EVENT_MAX_BYTES` (1 MiB) and a page of many such is held in memory.
/// The store ends a page at the first event that starts past ``pageBytes``
/// (``JobStore/events(jobID:after:limit:maxBytes:)``), so a page is at most ``pageBytes`` plus
/// one event, however the events' sizes change from one page to the next. The job API's event
/// stream, the dashboard's job page and `worker jobs events` read this way.
public enum JobEventPaging {
    /// The most events in any page.
    public static let maximumPageSize = 500
    /// About how many bytes of events one page holds.
    public static let pageBytes = 1 << 20

    /// Whether events may follow `page`, read with this `limit` and `maxBytes`: a page that
    /// stopped at either bound may; one short of both was the last.
    public static func mayHaveMore(_ page: [JobEvent], limit: Int, maxBytes: Int = pageBytes) -> Bool {
        page.count >= limit || page.reduce(0) { $0 + $1.data.utf8.count } >= maxBytes
    }
}
