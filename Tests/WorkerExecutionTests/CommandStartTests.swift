import Testing
@testable import WorkerExecution

/// worker-launch's start line, taken out of a command's standard error (``CommandStart``).
@Suite("CommandStart")
struct CommandStartTests {
    static let marker = JobLauncher.startMarker + [UInt8(ascii: "\n")]

    /// Feeds `chunks` through a filter; returns what is kept and whether the marker came.
    static func filtered(_ chunks: [[UInt8]]) -> (kept: [UInt8], reached: Bool) {
        var start = CommandStart()
        var kept: [UInt8] = []
        for chunk in chunks {
            chunk.withUnsafeBytes { bytes in
                kept += start.filter(bytes) ?? Array(bytes)
            }
        }
        kept += start.finish()
        return (kept, start.reached)
    }

    @Test("the marker line is taken out whole; what comes before and after it is kept byte for byte")
    func markerTakenOut() {
        let before = Array("bwrap: a warning\n".utf8), after = Array("the command's own\nlines".utf8)
        let result = Self.filtered([before + Self.marker + after])
        #expect(result.reached)
        #expect(result.kept == before + after)
    }

    @Test("a marker split over reads at every byte is still found")
    func markerSplit() {
        let stream = Array("x\n".utf8) + Self.marker + Array("after\n".utf8)
        for cut in 1..<stream.count {
            let result = Self.filtered([Array(stream[..<cut]), Array(stream[cut...])])
            #expect(result.reached, "cut at \(cut)")
            #expect(result.kept == Array("x\nafter\n".utf8), "cut at \(cut)")
        }
        let byByte = Self.filtered(stream.map { [$0] })
        #expect(byByte.reached && byByte.kept == Array("x\nafter\n".utf8))
    }

    @Test("lines that only begin like the marker, or hold it inside, are kept and are not the marker; one without its newline neither")
    func lookalikes() {
        let prefix = Array(JobLauncher.startMarker.dropLast(3))
        for stream in [
            prefix + Array("\n".utf8),
            JobLauncher.startMarker + Array(" and more\n".utf8),
            Array("say ".utf8) + Self.marker,
            JobLauncher.startMarker,
        ] {
            let result = Self.filtered([stream])
            #expect(!result.reached, "\(stream)")
            #expect(result.kept == stream, "\(stream)")
        }
    }

    @Test("after the marker nothing is looked at: a second marker line (the command's) stays")
    func onlyTheFirst() {
        var start = CommandStart()
        let first = Self.marker.withUnsafeBytes { start.filter($0) }
        #expect(first == [] && start.reached)
        #expect(Self.marker.withUnsafeBytes { start.filter($0) } == nil, "kept as it came")
    }
}
