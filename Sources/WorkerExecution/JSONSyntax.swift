/// Checks that a line of a command's output is one JSON object the database will store as it is,
/// without building it (docs/WORKER_SERVICE.md, "Job events").
///
/// A coding agent prints thousands of stream-json lines a minute, and each becomes an event.
/// Parsing every line with `JSONSerialization` only to learn whether it is an object took most
/// of the worker's CPU under a flood of output; this scan reads each byte once and allocates
/// nothing. It follows RFC 8259 and also refuses what PostgreSQL's `jsonb` refuses in valid JSON:
/// the escape `\u0000` and a surrogate escape without its pair.
enum JSONSyntax {
    /// Nesting deeper than this is refused (PostgreSQL's parser would hit its stack limit).
    static let maximumDepth = 512

    /// Whether `bytes` (valid UTF-8) hold exactly one JSON object, with optional whitespace around.
    static func isStorableObject(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        var scanner = Scanner(bytes: bytes)
        scanner.skipWhitespace()
        guard scanner.peek == UInt8(ascii: "{"), scanner.value(depth: 0) else { return false }
        scanner.skipWhitespace()
        return scanner.index == bytes.count
    }

    private struct Scanner {
        let bytes: UnsafeBufferPointer<UInt8>
        var index = 0

        init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

        var peek: UInt8? { index < bytes.count ? bytes[index] : nil }

        mutating func skipWhitespace() {
            while let byte = peek, byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D { index += 1 }
        }

        mutating func consume(_ byte: UInt8) -> Bool {
            guard peek == byte else { return false }
            index += 1
            return true
        }

        mutating func value(depth: Int) -> Bool {
            guard let byte = peek else { return false }
            switch byte {
            case UInt8(ascii: "{"):
                guard depth < JSONSyntax.maximumDepth else { return false }
                index += 1
                skipWhitespace()
                if consume(UInt8(ascii: "}")) { return true }
                while true {
                    guard string() else { return false }
                    skipWhitespace()
                    guard consume(UInt8(ascii: ":")) else { return false }
                    skipWhitespace()
                    guard value(depth: depth + 1) else { return false }
                    skipWhitespace()
                    if consume(UInt8(ascii: "}")) { return true }
                    guard consume(UInt8(ascii: ",")) else { return false }
                    skipWhitespace()
                }
            case UInt8(ascii: "["):
                guard depth < JSONSyntax.maximumDepth else { return false }
                index += 1
                skipWhitespace()
                if consume(UInt8(ascii: "]")) { return true }
                while true {
                    guard value(depth: depth + 1) else { return false }
                    skipWhitespace()
                    if consume(UInt8(ascii: "]")) { return true }
                    guard consume(UInt8(ascii: ",")) else { return false }
                    skipWhitespace()
                }
            case UInt8(ascii: "\""):
                return string()
            case UInt8(ascii: "t"):
                return literal("true")
            case UInt8(ascii: "f"):
                return literal("false")
            case UInt8(ascii: "n"):
                return literal("null")
            default:
                return number()
            }
        }

        mutating func literal(_ word: StaticString) -> Bool {
            let count = word.utf8CodeUnitCount
            guard bytes.count - index >= count else { return false }
            for offset in 0..<count where bytes[index + offset] != word.utf8Start[offset] { return false }
            index += count
            return true
        }

        mutating func string() -> Bool {
            guard consume(UInt8(ascii: "\"")) else { return false }
            /// A high surrogate escape waits for its low half, which must come next.
            var pendingHigh = false
            while let byte = peek {
                index += 1
                switch byte {
                case UInt8(ascii: "\""):
                    return !pendingHigh
                case UInt8(ascii: "\\"):
                    guard let escaped = peek else { return false }
                    index += 1
                    if escaped == UInt8(ascii: "u") {
                        guard let unit = hexUnit() else { return false }
                        switch unit {
                        case 0: return false
                        case 0xD800...0xDBFF:
                            if pendingHigh { return false }
                            pendingHigh = true
                        case 0xDC00...0xDFFF:
                            if !pendingHigh { return false }
                            pendingHigh = false
                        default:
                            if pendingHigh { return false }
                        }
                    } else {
                        if pendingHigh { return false }
                        switch escaped {
                        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                             UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                            break
                        default:
                            return false
                        }
                    }
                case 0x00..<0x20:
                    return false
                default:
                    if pendingHigh { return false }
                }
            }
            return false
        }

        mutating func hexUnit() -> UInt16? {
            guard bytes.count - index >= 4 else { return nil }
            var unit: UInt16 = 0
            for _ in 0..<4 {
                let byte = bytes[index]
                let digit: UInt8
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
                default: return nil
                }
                unit = unit << 4 | UInt16(digit)
                index += 1
            }
            return unit
        }

        /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
        /// A number, as JSON writes it and PostgreSQL's `numeric` (a `jsonb` number) holds it: at
        /// most 131,072 digits before the point and 16,383 after it, once the exponent is
        /// applied. `1e999999` is valid JSON, and its line was refused by the database whole
        /// (an event of `{"refused": ...}` instead of its text).
        mutating func number() -> Bool {
            _ = consume(UInt8(ascii: "-"))
            guard let first = peek, isDigit(first) else { return false }
            let integerStart = index
            index += 1
            if first != UInt8(ascii: "0") { digits() }
            let integerDigits = first == UInt8(ascii: "0") ? 0 : index - integerStart
            var fractionDigits = 0, leadingFractionZeros = 0, fractionIsZero = true
            if consume(UInt8(ascii: ".")) {
                guard let byte = peek, isDigit(byte) else { return false }
                let start = index
                while let byte = peek, isDigit(byte) {
                    if fractionIsZero {
                        if byte == UInt8(ascii: "0") { leadingFractionZeros += 1 } else { fractionIsZero = false }
                    }
                    index += 1
                }
                fractionDigits = index - start
            }
            var exponent = 0
            if consume(UInt8(ascii: "e")) || consume(UInt8(ascii: "E")) {
                var negative = false
                if !consume(UInt8(ascii: "+")) { negative = consume(UInt8(ascii: "-")) }
                guard let byte = peek, isDigit(byte) else { return false }
                while let byte = peek, isDigit(byte) {
                    exponent = min(exponent * 10 + Int(byte - UInt8(ascii: "0")), 1 << 40)
                    index += 1
                }
                if negative { exponent = -exponent }
            }
            // PostgreSQL's own bounds (numeric.c): the exponent, the scale, and for a number that
            // is not zero its weight (its leading digit's place).
            guard abs(exponent) < Int(Int32.max) / 2, fractionDigits - exponent <= 16_383 else { return false }
            if integerDigits == 0, fractionIsZero { return true }
            return (integerDigits > 0 ? integerDigits : -leadingFractionZeros) + exponent <= 131_072
        }

        mutating func digits() {
            while let byte = peek, isDigit(byte) { index += 1 }
        }

        func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }
    }
}
