import Foundation

extension UUID {
    /// `count` version-7 UUIDs (RFC 9562) in increasing order: 48 bits of Unix milliseconds, then
    /// a 12-bit sequence number, then random bits. Jobs enqueued together sort by id in the order
    /// they were given, so ties of priority and `run_at` are broken first in, first out.
    public static func timeOrdered(count: Int, now: Date = Date()) -> [UUID] {
        var generator = SystemRandomNumberGenerator()
        let start = UInt64(max(0, now.timeIntervalSince1970 * 1000))
        return (0..<count).map { index in
            // 4096 ids per millisecond; a larger batch borrows the following milliseconds.
            let milliseconds = start + UInt64(index >> 12)
            let sequence = UInt16(index & 0xFFF)
            let random = generator.next() as UInt64
            func byte(_ value: UInt64, _ shift: UInt64) -> UInt8 { UInt8(truncatingIfNeeded: value >> shift) }
            return UUID(uuid: (
                byte(milliseconds, 40), byte(milliseconds, 32), byte(milliseconds, 24),
                byte(milliseconds, 16), byte(milliseconds, 8), byte(milliseconds, 0),
                0x70 | UInt8(sequence >> 8), UInt8(truncatingIfNeeded: sequence),
                0x80 | byte(random, 58), byte(random, 0), byte(random, 8), byte(random, 16),
                byte(random, 24), byte(random, 32), byte(random, 40), byte(random, 48)
            ))
        }
    }
}

extension UUID {
    /// Byte-wise order: the same order as the ids' lower-case text, without building it.
    func precedes(_ other: UUID) -> Bool {
        withUnsafeBytes(of: uuid) { a in
            withUnsafeBytes(of: other.uuid) { b in
                a.lexicographicallyPrecedes(b)
            }
        }
    }
}
