import Synchronization

/// The log lines of a loop that logs many at once (the jobs of a claim, a written batch of
/// outcomes), handed to their destination together when the loop ends instead of one system call
/// a line.
///
/// A busy worker logs two lines a job at `LOG_LEVEL=info`; writing each with its own `write(2)`
/// took about a twentieth of the machine's CPU time at 25,000 jobs a second (docs/BENCHMARKS.md).
/// Log handlers that support it (the service's JSON and text handlers) look for
/// ``current`` and add their lines to it; a line waits only until the loop that logged it ends
/// (microseconds), so a killed process loses at most the lines of the batch being logged.
public final class LogLineBatch: Sendable {
    /// The batch that log lines of the running code join, if any.
    @TaskLocal public static var current: LogLineBatch?

    /// One destination's lines, in the order they were logged, and how to write them.
    private struct Pending {
        var bytes: [UInt8]
        let write: @Sendable (Int32, [UInt8]) -> Void
    }

    /// Lines by destination; `nil` once the batch is written: a line logged after that (by a
    /// task that inherited the batch and outlived its loop) is written at once.
    private let pending = Mutex<[Int32: Pending]?>([:])

    private init() {}

    /// Runs `body` with its log lines collected, then writes them, one destination at a time.
    public static func collecting<T>(_ body: () throws -> T) rethrows -> T {
        let batch = LogLineBatch()
        defer { batch.flush() }
        return try $current.withValue(batch) { try body() }
    }

    /// Adds `line` (a whole line, its newline included) for `destination`, whose lines `write`
    /// writes when the batch ends (a function rather than a closure capturing the destination:
    /// this runs for every log line).
    public func append(_ line: [UInt8], to destination: Int32, write: @escaping @Sendable (Int32, [UInt8]) -> Void) {
        let taken = pending.withLock { pending -> Bool in
            guard pending != nil else { return false }
            if pending![destination] == nil {
                var bytes: [UInt8] = []
                bytes.reserveCapacity(64 * 1024)
                pending![destination] = Pending(bytes: bytes, write: write)
            }
            pending![destination]!.bytes.append(contentsOf: line)
            return true
        }
        if !taken { write(destination, line) }
    }

    private func flush() {
        let all = pending.withLock { pending in
            defer { pending = nil }
            return pending ?? [:]
        }
        for destination in all.keys.sorted() {
            let entry = all[destination]!
            entry.write(destination, entry.bytes)
        }
    }
}
