/// Text from jobs (prompts, errors, results) made safe to print on a terminal.
///
/// A prompt is written by whoever enqueued the job; printed raw, `ESC [2J` clears the screen,
/// `CR` overwrites what `jobs list` showed before it, and OSC sequences can retitle the window or
/// plant links. The pretty CLI output therefore shows every control character as a visible escape;
/// `--json` output is untouched (JSON escapes C0 controls itself, and its readers are programs).
public enum TerminalText {
    /// `text` with control characters written as escapes: `\e` (ESC), `\r`, `\t`, `\a` (BEL), `\b`,
    /// `\v`, `\f`, `\n` unless `keepingNewlines`, and `\u{XX}` for the other C0 controls, DEL, the C1
    /// controls (U+0080-U+009F; U+009B is a one-character CSI) and the bidirectional overrides and
    /// isolates (U+202A-U+202E, U+2066-U+2069), which reorder what is shown.
    ///
    /// Newlines are kept on request, for multi-line fields printed on their own lines
    /// (`jobs show`); a table row never keeps them. A backslash is not escaped: the output is for
    /// reading, not for parsing back.
    public static func escaped(_ text: String, keepingNewlines: Bool = false) -> String {
        guard text.unicodeScalars.contains(where: { needsEscape($0, keepingNewlines: keepingNewlines) }) else { return text }
        var result = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            guard needsEscape(scalar, keepingNewlines: keepingNewlines) else {
                result.append(scalar)
                continue
            }
            let escape: String = switch scalar {
            case "\u{1B}": "\\e"
            case "\r": "\\r"
            case "\t": "\\t"
            case "\n": "\\n"
            case "\u{07}": "\\a"
            case "\u{08}": "\\b"
            case "\u{0B}": "\\v"
            case "\u{0C}": "\\f"
            default: "\\u{" + String(scalar.value, radix: 16, uppercase: true).leftPadded(to: 2) + "}"
            }
            result.append(contentsOf: escape.unicodeScalars)
        }
        return String(result)
    }

    private static func needsEscape(_ scalar: Unicode.Scalar, keepingNewlines: Bool) -> Bool {
        switch scalar.value {
        case 0x0A: !keepingNewlines
        case 0x00...0x1F, 0x7F...0x9F, 0x202A...0x202E, 0x2066...0x2069: true
        default: false
        }
    }
}

private extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
