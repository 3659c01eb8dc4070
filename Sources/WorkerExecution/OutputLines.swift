import Foundation

/// Splits a command's output stream into lines, each at most `maximumBytes` long: the rest of
/// a longer line is only counted, and reported with the line when its newline comes.
///
/// Memory stays bounded by `maximumBytes` whatever the command prints (one endless line
/// included).
struct OutputLines {
    struct Line {
        var bytes: [UInt8]
        /// Bytes of the line past `maximumBytes`, not kept.
        var cutBytes: Int
    }

    let maximumBytes: Int
    private var current: [UInt8] = []
    private var cutBytes = 0

    init(maximumBytes: Int) {
        self.maximumBytes = max(1, maximumBytes)
    }

    /// The lines `chunk` completes (without their `\n`, and without a `\r` before it).
    mutating func append(_ chunk: UnsafeRawBufferPointer) -> [Line] {
        guard let base = chunk.baseAddress else { return [] }
        var lines: [Line] = []
        var start = 0
        while start < chunk.count {
            // memchr: the output may be 100 MB in one line, scanned byte by byte otherwise.
            guard let found = memchr(base + start, Int32(UInt8(ascii: "\n")), chunk.count - start) else {
                keep(UnsafeRawBufferPointer(start: base + start, count: chunk.count - start))
                break
            }
            let newline = UnsafeRawPointer(found) - base
            keep(UnsafeRawBufferPointer(start: base + start, count: newline - start))
            lines.append(take())
            start = newline + 1
        }
        return lines
    }

    /// The last line, when the output did not end with a newline.
    mutating func finish() -> Line? {
        current.isEmpty && cutBytes == 0 ? nil : take()
    }

    private mutating func keep(_ bytes: UnsafeRawBufferPointer) {
        let room = maximumBytes - current.count
        if bytes.count <= room {
            current.append(contentsOf: bytes)
        } else {
            if room > 0 { current.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[0..<room])) }
            cutBytes += bytes.count - room
        }
    }

    private mutating func take() -> Line {
        if current.last == UInt8(ascii: "\r"), cutBytes == 0 { current.removeLast() }
        defer {
            current = []
            current.reserveCapacity(128)
            cutBytes = 0
        }
        return Line(bytes: current, cutBytes: cutBytes)
    }
}
