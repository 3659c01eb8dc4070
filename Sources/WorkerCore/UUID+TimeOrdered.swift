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
            var bytes = [UInt8](repeating: 0, count: 16)
            for byte in 0..<6 { bytes[byte] = UInt8(truncatingIfNeeded: milliseconds >> (40 - 8 * byte)) }
            bytes[6] = 0x70 | UInt8(sequence >> 8)
            bytes[7] = UInt8(truncatingIfNeeded: sequence)
            bytes[8] = 0x80 | UInt8(truncatingIfNeeded: random >> 58)
            for byte in 9..<16 { bytes[byte] = UInt8(truncatingIfNeeded: random >> (8 * (byte - 9))) }
            return UUID(uuid: (bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
                               bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]))
        }
    }
}
