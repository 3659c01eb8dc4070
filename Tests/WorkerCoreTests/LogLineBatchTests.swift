import Synchronization
import Testing
@testable import WorkerCore

@Suite("Log line batches")
struct LogLineBatchTests {
    /// What a destination was handed, write by write.
    final class Writes: Sendable {
        let writes = Mutex<[(Int32, String)]>([])
        var writer: @Sendable (Int32, [UInt8]) -> Void {
            { destination, bytes in self.writes.withLock { $0.append((destination, String(decoding: bytes, as: UTF8.self))) } }
        }
        var all: [(Int32, String)] { writes.withLock { $0 } }
    }

    @Test("lines logged inside a batch are written together when it ends, one write a destination, in order")
    func collects() {
        let writes = Writes()
        LogLineBatch.collecting {
            for index in 1...3 {
                LogLineBatch.current?.append(Array("line \(index)\n".utf8), to: 1, write: writes.writer)
            }
            LogLineBatch.current?.append(Array("error\n".utf8), to: 2, write: writes.writer)
            #expect(writes.all.isEmpty)
        }
        #expect(writes.all.map(\.0) == [1, 2])
        #expect(writes.all.map(\.1) == ["line 1\nline 2\nline 3\n", "error\n"])
        #expect(LogLineBatch.current == nil)
    }

    @Test("a line added after its batch was written (by a task that outlived the loop) is written at once")
    func lateLine() throws {
        let writes = Writes()
        let late = try #require(LogLineBatch.collecting { LogLineBatch.current })
        late.append(Array("late\n".utf8), to: 1, write: writes.writer)
        #expect(writes.all.map(\.1) == ["late\n"])
    }
}
