import Foundation

/// A `.env` file read the way Node's `dotenv` reads it, so that the `.env` of a Node or
/// Supabase project works here unchanged.
///
/// swift-configuration's own `.env` parser keeps quotes, `export ` and inline comments in the
/// values; this one produces plain `NAME → value` pairs that the worker hands to
/// swift-configuration as an in-memory provider (see ``WorkerConfiguration/load(environment:environmentFile:)``).
///
/// The syntax, per line:
/// - `NAME=value`; whitespace around the name and the value is trimmed; an optional `export ` prefix;
///   names are letters, digits, `_`, `.` and `-` (dotenv's `[\w.-]+`).
/// - Blank lines and lines starting with `#` are ignored, and so are lines without `=` (as dotenv does).
/// - Unquoted values end at an inline comment: a `#` preceded by whitespace (`A=4 # four` is `4`).
///   A `#` with no whitespace before it is part of the value (`URL=http://x/#frag`, `COLOR=#fff`).
///   dotenv itself cuts an unquoted value at any `#`; this is the one deliberate difference.
/// - `'…'`, `"…"` and `` `…` `` quotes are removed and may span several lines; a comment may follow
///   the closing quote. Inside double quotes only, `\n`, `\r` and `\t` become a newline, carriage
///   return and tab (dotenv expands `\n` and `\r`); any other backslash is kept as written.
///   A value whose quote is not closed is taken as written, quote included (as dotenv does).
/// - When a name appears twice, the last value wins (dotenv's `parse` keeps the last one).
/// - No `${VAR}` interpolation (that is `dotenv-expand`, not `dotenv`).
public struct DotenvFile: Sendable, Hashable {
    /// The variables, in no particular order.
    public var values: [String: String]

    public init(values: [String: String]) {
        self.values = values
    }

    /// Parses the text of a `.env` file.
    public init(parsing text: String) {
        values = Self.parse(text)
    }

    /// Reads the file at `path`; a missing file is an empty one.
    /// - Throws: ``ReadError`` when the file exists but cannot be read as UTF-8 text.
    public init(contentsOf path: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            self.init(values: [:])
            return
        }
        if isDirectory.boolValue { throw ReadError(path: path, reason: "it is a directory") }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ReadError(path: path, reason: "it cannot be read (check its permissions)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ReadError(path: path, reason: "it is not UTF-8 text")
        }
        self.init(parsing: text)
    }

    /// A `.env` file that exists but cannot be used.
    public struct ReadError: Error, Sendable, Hashable, CustomStringConvertible {
        public var path: String
        public var reason: String

        public var description: String { "cannot read the environment file \(path): \(reason)" }
    }

    private static func parse(_ text: String) -> [String: String] {
        var source = Substring(text.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n"))
        if source.first == "\u{FEFF}" { source = source.dropFirst() }
        var values: [String: String] = [:]
        while !source.isEmpty {
            let lineEnd = source.firstIndex(of: "\n") ?? source.endIndex
            var line = source[..<lineEnd]
            source = lineEnd == source.endIndex ? "" : source[source.index(after: lineEnd)...]

            line = line.drop { $0 == " " || $0 == "\t" }
            if line.isEmpty || line.first == "#" { continue }
            if line.hasPrefix("export"), let next = line.dropFirst("export".count).first, next == " " || next == "\t" {
                line = line.dropFirst("export".count).drop { $0 == " " || $0 == "\t" }
            }
            // `NAME=value`, or `NAME: value` (a colon and a space), which Node's dotenv reads too.
            let nameEnd = line.firstIndex { !isNameScalar($0.unicodeScalars.first!) && $0 != " " && $0 != "\t" } ?? line.endIndex
            guard nameEnd < line.endIndex else { continue }
            let separator = line[nameEnd]
            let afterSeparator = line.index(after: nameEnd)
            if separator == ":" {
                guard afterSeparator < line.endIndex, line[afterSeparator] == " " || line[afterSeparator] == "\t" else { continue }
            } else if separator != "=" {
                continue
            }
            let name = line[..<nameEnd].trimmingCharacters(in: .whitespaces)
            guard !name.isEmpty, !name.contains(" "), !name.contains("\t") else { continue }
            let afterEquals = line[afterSeparator...]
            let rest = afterEquals.drop { $0 == " " || $0 == "\t" }
            // A quoted value may run over several lines: the closing quote is looked for in the rest of the file.
            // Where no closing quote follows once `\"` counts as an escape, the first quote closes
            // (Node's dotenv backtracks so: `"abc\"` is `abc\`, a Windows path's final backslash).
            if let quote = rest.first, "'\"`".contains(quote), let found = quoted(opening: rest, escapes: true) ?? quoted(opening: rest, escapes: false) {
                values[name] = quote == "\"" ? expandEscapes(found.value) : found.value
                source = found.remainder
                continue
            }
            values[name] = unquoted(afterEquals)
        }
        return values
    }

    /// The value between the quote that starts `opening` and its closing quote, which may be on a
    /// later line of the file (`opening` is a slice of the whole file's text); `nil` when the quote is
    /// not closed, or something other than a comment follows the closing quote. `remainder` is the
    /// rest of the file after the line that holds the closing quote.
    private static func quoted(opening: Substring, escapes: Bool) -> (value: String, remainder: Substring)? {
        let text = opening.base
        let quote = opening[opening.startIndex]
        let valueStart = text.index(after: opening.startIndex)
        var index = valueStart
        var escaped = false
        while index < text.endIndex {
            let character = text[index]
            if escaped {
                escaped = false
            } else if character == "\\", escapes {
                escaped = true
            } else if character == quote {
                let after = text[text.index(after: index)...]
                let lineEnd = after.firstIndex(of: "\n") ?? after.endIndex
                let trailing = after[..<lineEnd].drop { $0 == " " || $0 == "\t" }
                guard trailing.isEmpty || trailing.first == "#" else { return nil }
                let remainder = lineEnd == after.endIndex ? after[lineEnd...] : after[after.index(after: lineEnd)...]
                return (String(text[valueStart..<index]), remainder)
            }
            index = text.index(after: index)
        }
        return nil
    }

    /// An unquoted value (all that follows `=`): up to an inline comment, a `#` after whitespace, then trimmed.
    private static func unquoted(_ text: Substring) -> String {
        // `=` counts as the previous character: `A=#fff` keeps its `#`, `A= # note` is empty.
        var previous: Character = "="
        var end = text.endIndex
        for index in text.indices {
            let character = text[index]
            if character == "#", previous == " " || previous == "\t" {
                end = index
                break
            }
            previous = character
        }
        return text[..<end].trimmingCharacters(in: .whitespaces)
    }

    /// `\n`, `\r` and `\t` in a double-quoted value.
    private static func expandEscapes(_ value: String) -> String {
        guard value.contains("\\") else { return value }
        var result = ""
        var iterator = value.makeIterator()
        while let character = iterator.next() {
            guard character == "\\" else {
                result.append(character)
                continue
            }
            switch iterator.next() {
            case "n"?: result.append("\n")
            case "r"?: result.append("\r")
            case "t"?: result.append("\t")
            case let other?: result.append("\\"); result.append(other)
            case nil: result.append("\\")
            }
        }
        return result
    }

    private static func isNameScalar(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar {
        case "A"..."Z", "a"..."z", "0"..."9", "_", ".", "-": true
        default: false
        }
    }
}
