import Foundation

/// Reads a file handle line by line in 64 KiB chunks, without loading the whole input.
struct LineReader {
    private let handle: FileHandle
    private var buffer = Data()
    private var finished = false

    init(handle: FileHandle) {
        self.handle = handle
    }

    /// The next line without its terminator (a final `\r` included), or `nil` at the end of
    /// input. Its bytes as they are: the caller decides what a line that is not UTF-8 is (before,
    /// such bytes became U+FFFD, and a prompt other than the one written was enqueued).
    mutating func next() throws -> Data? {
        while true {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                var line = Data(buffer[buffer.startIndex..<newline])
                buffer.removeSubrange(buffer.startIndex...newline)
                if line.last == UInt8(ascii: "\r") { line.removeLast() }
                return line
            }
            if finished {
                guard !buffer.isEmpty else { return nil }
                defer { buffer.removeAll() }
                return buffer
            }
            let chunk = try handle.read(upToCount: 65_536) ?? Data()
            if chunk.isEmpty { finished = true } else { buffer.append(chunk) }
        }
    }
}
