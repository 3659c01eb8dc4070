/// Splits a command line into words the way a POSIX shell does, without running a shell:
/// whitespace separates words, `'...'` keeps everything literally, `"..."` keeps everything
/// but `\"`, `\\`, `\$` and `` \` `` escapes, and a backslash outside quotes escapes the next
/// character. No variables, globs or substitutions.
public enum ShellWords {
    public struct Error: Swift.Error, CustomStringConvertible, Equatable {
        public var description: String
    }

    public static func split(_ text: String) throws -> [String] {
        var words: [String] = []
        var current = ""
        var inWord = false
        var iterator = text.makeIterator()
        while let character = iterator.next() {
            switch character {
            case " ", "\t", "\n":
                if inWord {
                    words.append(current)
                    current = ""
                    inWord = false
                }
            case "'":
                inWord = true
                var closed = false
                while let next = iterator.next() {
                    if next == "'" { closed = true; break }
                    current.append(next)
                }
                if !closed { throw Error(description: "unterminated single quote") }
            case "\"":
                inWord = true
                var closed = false
                while let next = iterator.next() {
                    if next == "\"" { closed = true; break }
                    if next == "\\" {
                        guard let escaped = iterator.next() else { break }
                        if !"\"\\$`".contains(escaped) { current.append("\\") }
                        current.append(escaped)
                        continue
                    }
                    current.append(next)
                }
                if !closed { throw Error(description: "unterminated double quote") }
            case "\\":
                inWord = true
                guard let escaped = iterator.next() else { throw Error(description: "a trailing backslash escapes nothing") }
                current.append(escaped)
            default:
                inWord = true
                current.append(character)
            }
        }
        if inWord { words.append(current) }
        return words
    }
}
