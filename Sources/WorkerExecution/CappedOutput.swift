import Foundation

/// Keeps the first `limit` bytes of a stream (and the last few for error messages), counting
/// the rest, so a child that writes without end costs bounded memory.
struct CappedOutput: Sendable {
    let limit: Int
    private(set) var head: [UInt8] = []
    private(set) var total = 0
    /// The most recent bytes, for `last_error`.
    private(set) var tail: [UInt8] = []
    private let tailLimit: Int

    init(limit: Int, tailLimit: Int = 2048) {
        self.limit = limit
        self.tailLimit = tailLimit
        head.reserveCapacity(min(limit, 64 * 1024))
    }

    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        total += bytes.count
        if head.count < limit {
            head.append(contentsOf: bytes.prefix(limit - head.count))
        }
        if bytes.count >= tailLimit {
            tail = Array(bytes.suffix(tailLimit))
        } else {
            tail.append(contentsOf: bytes)
            if tail.count > tailLimit { tail.removeFirst(tail.count - tailLimit) }
        }
    }

    var truncatedBytes: Int { total - head.count }

    /// The kept text, with a marker where it was cut.
    var text: String {
        let kept = String(decoding: head, as: UTF8.self)
        return truncatedBytes > 0 ? kept + "\n[… \(truncatedBytes) more bytes cut: JOB_OUTPUT_LIMIT_BYTES=\(limit)]" : kept
    }

    var tailText: String {
        String(decoding: tail, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
