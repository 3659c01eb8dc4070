#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

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

    /// `true` when the stream is a terminal and `NO_COLOR` is unset.
    var supportsColour: Bool {
        isatty(fileDescriptor) == 1 && getenv("NO_COLOR") == nil
    }

    /// Writes a whole line with unbuffered `write(2)` calls, so lines from concurrent tasks
    /// never interleave mid-line and nothing sits in a buffer when the process is killed.
    func write(line: String) {
        var bytes = Array(line.utf8)
        write(line: &bytes)
    }

    /// ``write(line:)`` for a line built as bytes (the newline is appended to it).
    func write(line bytes: inout [UInt8]) {
        bytes.append(UInt8(ascii: "\n"))
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
