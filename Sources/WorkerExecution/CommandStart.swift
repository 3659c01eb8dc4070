/// Whether a command started through `worker-launch --announce` was reached: the launcher's
/// ``JobLauncher/startMarker`` line on its standard error, found and taken out of what is kept
/// of that stream (events, the error's tail).
///
/// What starts a command can fail before the command runs: `worker-launch` (a control group it
/// cannot join, a user it cannot become, a program missing) or bubblewrap (no user namespace
/// left, a mount refused). Those print a line and exit non-zero, as a failing command would, so
/// by status they were the job's failure: an attempt used, and on a host whose sandbox broke,
/// every job failed for good within three tries. The marker tells them apart: it is written only
/// once everything before the command has passed, so a run that ends without it never reached
/// the command (``CommandFailure/cannotStart(program:reason:)``, the worker's fault). A command
/// cannot forge the other way: by the time it runs, the marker is already out.
struct CommandStart {
    /// Whether the marker line came.
    private(set) var reached = false
    /// Once it came: how many of the bytes the chunk that held it kept (``filter(_:)``) came
    /// before it (the lines of what starts the command), the rest being the command's own.
    private(set) var keptBeforeMarker = 0
    /// The line so far, while it may still be the marker.
    private var held: [UInt8] = []
    /// The line so far is not the marker (it went through as it came).
    private var passingLine = false

    /// The bytes of `chunk` to keep, the marker's line taken out; `nil`: keep `chunk` as it is
    /// (once the marker came, nothing is looked at).
    mutating func filter(_ chunk: UnsafeRawBufferPointer) -> [UInt8]? {
        guard !reached else { return nil }
        let marker = JobLauncher.startMarker
        var kept: [UInt8] = []
        for (offset, byte) in chunk.enumerated() {
            if byte == UInt8(ascii: "\n") {
                if !passingLine && held == marker {
                    reached = true
                    held = []
                    keptBeforeMarker = kept.count
                    kept.append(contentsOf: chunk[(offset + 1)...])
                    return kept
                }
                kept.append(contentsOf: held)
                kept.append(byte)
                held = []
                passingLine = false
            } else if passingLine {
                kept.append(byte)
            } else {
                held.append(byte)
                if held.count > marker.count || held[held.count - 1] != marker[held.count - 1] {
                    kept.append(contentsOf: held)
                    held = []
                    passingLine = true
                }
            }
        }
        return kept
    }

    /// What is still held at the end of the stream (a last line that began like the marker).
    mutating func finish() -> [UInt8] {
        defer { held = [] }
        return held
    }
}
