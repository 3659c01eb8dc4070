/// How readers of a job's stored events size their pages: by bytes, not by count, since one
/// event may be up to `JOB_EVENT_MAX_BYTES` (1 MiB) and a page of many such is held in memory.
/// The job API's event stream and the dashboard's job page read this way.
public enum JobEventPaging {
    /// The most events in any page.
    public static let maximumPageSize = 500
    /// About how many bytes of events one page holds.
    public static let pageBytes = 1 << 20

    /// The events to read next after a page of `events` events of `bytes` bytes: as many as fit
    /// ``pageBytes`` at that page's size per event.
    public static func nextPageSize(events: Int, bytes: Int) -> Int {
        let perEvent = max(1, bytes / max(events, 1))
        return min(maximumPageSize, max(1, pageBytes / perEvent))
    }
}
