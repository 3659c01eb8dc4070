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
    /// Whether the line so far ends with `\r` (kept or cut): a CRLF line's `\r` is no part of it.
    private var endsWithCarriageReturn = false

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
        if let last = bytes.last { endsWithCarriageReturn = last == UInt8(ascii: "\r") }
        let room = maximumBytes - current.count
        if bytes.count <= room {
            current.append(contentsOf: bytes)
        } else {
            if room > 0 { current.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[0..<room])) }
            cutBytes += bytes.count - room
        }
    }

    private mutating func take() -> Line {
        if endsWithCarriageReturn {
            // A CRLF line's `\r`: dropped where it was kept, not counted as cut where it was not
            // (a line that fits but for it is whole).
            if cutBytes > 0 { cutBytes -= 1 } else { current.removeLast() }
        }
        if cutBytes > 0 {
            // Cut inside a character: its first bytes are cut too (they would read as U+FFFD,
            // and the count would not be the bytes the line lost).
            let partial = Self.partialCharacterBytes(at: current)
            current.removeLast(partial)
            cutBytes += partial
        }
        defer {
            current = []
            current.reserveCapacity(128)
            cutBytes = 0
            endsWithCarriageReturn = false
        }
        return Line(bytes: current, cutBytes: cutBytes)
    }

    /// How many bytes at the end of `bytes` begin a UTF-8 character they do not complete.
    static func partialCharacterBytes(at bytes: [UInt8]) -> Int {
        var continuation = 0
        for byte in bytes.reversed().prefix(4) {
            if byte & 0xC0 == 0x80 {
                continuation += 1
                continue
            }
            let length = byte >= 0xF0 ? 4 : byte >= 0xE0 ? 3 : byte >= 0xC0 ? 2 : 1
            return length > continuation + 1 ? continuation + 1 : 0
        }
        return 0
    }
}
