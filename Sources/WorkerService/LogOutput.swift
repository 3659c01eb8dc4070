#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import WorkerCore

/// Where log lines go: standard output (the service) or standard error (CLI commands, whose
/// standard output is their result).
public enum LogOutput: Sendable {
    case standardOutput
    case standardError

    var fileDescriptor: Int32 {
        switch self {
        case .standardOutput: STDOUT_FILENO
        case .standardError: STDERR_FILENO
        }
    }

    /// Whether the stream is a terminal (where pretty lines are coloured).
    var isTerminal: Bool {
        isatty(fileDescriptor) == 1
    }

    /// Writes a whole line with unbuffered `write(2)` calls, so lines from concurrent tasks
    /// never interleave mid-line and nothing sits in a buffer when the process is killed; inside
    /// a ``LogLineBatch`` (a loop logging many lines at once), with that batch's lines.
    func write(line: String) {
        var bytes = Array(line.utf8)
        write(line: &bytes)
    }

    /// ``write(line:)`` for a line built as bytes (the newline is appended to it).
    func write(line bytes: inout [UInt8]) {
        bytes.append(UInt8(ascii: "\n"))
        if let batch = LogLineBatch.current {
            batch.append(bytes, to: fileDescriptor, write: Self.write(to:lines:))
        } else {
            Self.write(bytes[...], to: fileDescriptor)
        }
    }

    /// Writes whole lines a few kilobytes at a time (``chunks(of:limit:)``).
    @Sendable static func write(to fileDescriptor: Int32, lines bytes: [UInt8]) {
        for chunk in chunks(of: bytes) { write(bytes[chunk], to: fileDescriptor) }
    }

    /// `bytes` (lines, each ending in a newline) cut into runs of whole lines of at most `limit`
    /// bytes, a longer line alone: a pipe (a container runtime's log driver reads standard output
    /// through one) keeps a write whole only up to `PIPE_BUF` (4,096 bytes), so lines of other
    /// tasks fall between these writes, never inside a line.
    static func chunks(of bytes: [UInt8], limit: Int = 4096) -> [Range<Int>] {
        var chunks: [Range<Int>] = []
        var start = 0
        while start < bytes.count {
            var end = start
            while end < bytes.count {
                let lineEnd = (bytes[end...].firstIndex(of: UInt8(ascii: "\n")) ?? bytes.count - 1) + 1
                if lineEnd - start > limit, end > start { break }
                end = lineEnd
                if end - start >= limit { break }
            }
            chunks.append(start..<end)
            start = end
        }
        return chunks
    }

    private static func write(_ bytes: ArraySlice<UInt8>, to fileDescriptor: Int32) {
        bytes.withUnsafeBufferPointer { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = Glibc.write(fileDescriptor, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    return
                }
                offset += written
            }
        }
    }
}
