import Foundation
import Testing
import WorkerCore

@Suite("time-ordered UUIDs")
struct TimeOrderedUUIDTests {
    @Test("version 7, variant RFC 9562, strictly increasing as text and as bytes, across millisecond borrowing")
    func ordered() {
        let ids = UUID.timeOrdered(count: 10_000, now: Date(timeIntervalSince1970: 1_764_000_000.123))
        #expect(Set(ids).count == ids.count)
        let texts = ids.map { $0.uuidString.lowercased() }
        #expect(texts == texts.sorted())
        #expect(texts.allSatisfy { $0.dropFirst(14).first == "7" })
        #expect(texts.allSatisfy { "89ab".contains($0.dropFirst(19).first!) })
        // The first 48 bits are the Unix time in milliseconds.
        #expect(texts[0].hasPrefix(String(format: "%08x-%04x", 1_764_000_000_123 >> 16, 1_764_000_000_123 & 0xFFFF)))
    }
}
