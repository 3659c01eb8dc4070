/// Which queues get their own depth series on `/metrics`, and what the rest add up to.
///
/// Why: every distinct `queue` label is six series (`worker_queue_jobs` by status and
/// `worker_queue_oldest_pending_age_seconds`) that Prometheus keeps, and the stats list every
/// queue in the table, including ones other workers serve and ones made up by whoever enqueues.
/// So only the queues this worker serves and the `limit` deepest others are shown by name;
/// the rest are summed under `queue="other"`.
struct QueueDepthSelection: Sendable, Equatable {
    /// The label of the bucket that sums the queues not shown by name. A real queue of that name
    /// is always counted there, so that one label never means two things.
    static let otherLabel = "other"
    /// How many queues besides the served ones are shown by name.
    static let defaultLimit = 50

    /// The counts per `queue` label: served queues (zeros when the table holds none of their
    /// jobs), the deepest others, and ``otherLabel`` (always present, zeros when nothing is left over).
    let series: [String: QueueCounts]

    /// - Parameters:
    ///   - queues: the counts of every queue in the table.
    ///   - served: the queues this worker claims from.
    ///   - limit: how many other queues to show by name: the deepest, by unfinished jobs
    ///     (pending + processing), ties by name so that the choice is stable.
    init(_ queues: [String: QueueCounts], served: Set<String>, limit: Int = Self.defaultLimit) {
        var series: [String: QueueCounts] = [:]
        for queue in served where queue != Self.otherLabel {
            series[queue] = queues[queue] ?? QueueCounts()
        }
        let others = queues
            .filter { !served.contains($0.key) || $0.key == Self.otherLabel }
            .sorted { lhs, rhs in
                let (left, right) = (lhs.value.pending + lhs.value.processing, rhs.value.pending + rhs.value.processing)
                return left != right ? left > right : lhs.key < rhs.key
            }
        var rest = QueueCounts()
        var shown = 0
        for (queue, counts) in others {
            if queue != Self.otherLabel && shown < limit {
                series[queue] = counts
                shown += 1
            } else {
                rest.pending += counts.pending
                rest.processing += counts.processing
                rest.completed += counts.completed
                rest.failed += counts.failed
                rest.cancelled += counts.cancelled
                if let age = counts.oldestPendingAgeSeconds {
                    rest.oldestPendingAgeSeconds = max(rest.oldestPendingAgeSeconds ?? 0, age)
                }
            }
        }
        series[Self.otherLabel] = rest
        self.series = series
    }
}
