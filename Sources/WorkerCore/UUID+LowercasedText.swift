import Foundation

extension UUID {
    /// The id as lower-case text (`01a2294b-b5dd-7000-a39d-6003beb6408c`), the form the stores
    /// keep and the logs print. Formatted by hand: Foundation's `uuidString` goes through
    /// `snprintf` and `lowercased()` through Unicode case mapping, and a busy worker formats
    /// ids for every log line.
    public var lowercasedText: String {
        let digits: StaticString = "0123456789abcdef"
        return withUnsafeBytes(of: uuid) { bytes in
            String(unsafeUninitializedCapacity: 36) { text in
                var index = 0
                for (position, byte) in bytes.enumerated() {
                    if position == 4 || position == 6 || position == 8 || position == 10 {
                        text[index] = UInt8(ascii: "-")
                        index += 1
                    }
                    text[index] = digits.utf8Start[Int(byte >> 4)]
                    text[index + 1] = digits.utf8Start[Int(byte & 0x0F)]
                    index += 2
                }
                return index
            }
        }
    }
}
