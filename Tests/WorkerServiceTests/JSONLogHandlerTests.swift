import Foundation
import Logging
import Testing
import WorkerCore
@testable import WorkerService

@Suite("Log handlers")
struct LogHandlerTests {
    @Test("metadata values keep their JSON types and strings are escaped")
    func jsonValues() throws {
        var line = Array("{".utf8)
        JSONText.appendString("k", to: &line)
        line.append(UInt8(ascii: ":"))
        JSONLogHandler.append(
            .dictionary([
                "int": .stringConvertible(42),
                "double": .stringConvertible(1.5),
                "bool": .stringConvertible(true),
                "text": .string("quote \" backslash \\ newline \n tab \t bell \u{07} ü"),
                "list": .array([.string("a"), .stringConvertible(2)]),
            ]),
            to: &line
        )
        line.append(UInt8(ascii: "}"))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line)) as? [String: [String: Any]])
        let inner = try #require(object["k"])
        #expect(inner["int"] as? Int == 42)
        #expect(inner["double"] as? Double == 1.5)
        #expect(inner["text"] as? String == "quote \" backslash \\ newline \n tab \t bell \u{07} ü")
        #expect((inner["list"] as? [Any])?.count == 2)
    }

    @Test("a batch of log lines is written in runs of whole lines of at most 4,096 bytes (a pipe keeps those whole); a longer line alone")
    func lineChunks() {
        let lines = (0..<100).map { "line \($0) " + String(repeating: "x", count: 290) + "\n" }
        let long = String(repeating: "y", count: 5000) + "\n"
        let bytes = Array((lines[..<40].joined() + long + lines[40...].joined()).utf8)
        let chunks = LogOutput.chunks(of: bytes)
        #expect(chunks.flatMap { Array(bytes[$0]) } == bytes)
        #expect(chunks.count >= 9 && chunks.count < 20, "\(chunks.count)")
        for chunk in chunks {
            #expect(bytes[chunk.upperBound - 1] == UInt8(ascii: "\n"))
            #expect(chunk.count <= 4096 || String(decoding: bytes[chunk], as: UTF8.self) == long, "\(chunk)")
        }
        #expect(LogOutput.chunks(of: Array("one\n".utf8)) == [0..<4])
    }

    @Test("timestamps are ISO-8601 UTC with milliseconds, as Foundation formats them")
    func timestamp() {
        #expect(LogTimestamp.iso8601(Date(timeIntervalSince1970: 1_700_000_000.125)) == "2023-11-14T22:13:20.125Z")
        #expect(LogTimestamp.iso8601(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00.000Z")
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        for seconds in [951_868_799.5, 1_767_225_599.999, 4_102_444_800.001, 1_000_000_000.0] {
            let date = Date(timeIntervalSince1970: seconds)
            #expect(LogTimestamp.iso8601(date) == formatter.string(from: date), "\(seconds)")
        }
    }
}
