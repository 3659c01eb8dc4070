import Testing
@testable import WorkerService

/// Prompts printed by `jobs list` / `jobs show` must not drive the terminal (issue 13).
@Suite("TerminalText")
struct TerminalTextTests {
    @Test("control characters become visible escapes; plain text and newlines (on request) stay")
    func escapes() {
        #expect(TerminalText.escaped("plain ✓ text") == "plain ✓ text")
        #expect(TerminalText.escaped("a\u{1B}[2J\rb\u{07}\u{00}\u{7F}\u{9B}c\t") == #"a\e[2J\rb\a\u{00}\u{7F}\u{9B}c\t"#)
        #expect(TerminalText.escaped("one\ntwo") == #"one\ntwo"#)
        #expect(TerminalText.escaped("one\ntwo\r", keepingNewlines: true) == "one\ntwo\\r")
        #expect(TerminalText.escaped("abc\u{202E}def") == #"abc\u{202E}def"#)
    }
}
