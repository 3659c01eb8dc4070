import Testing
@testable import WorkerExecution

@Suite("ShellWords")
struct ShellWordsTests {
    @Test("splits like a shell: quotes, escapes, runs of blanks", arguments: [
        ("claude -p --verbose", ["claude", "-p", "--verbose"]),
        ("  a   b\tc  ", ["a", "b", "c"]),
        (#"run "two words" 'single $HOME' x"#, ["run", "two words", "single $HOME", "x"]),
        (#"a\ b "q\"uote" 'it''s'"#, ["a b", "q\"uote", "its"]),
        (#"emp"" ''"#, ["emp", ""]),
    ])
    func splits(text: String, words: [String]) throws {
        #expect(try ShellWords.split(text) == words)
    }

    @Test("unterminated quotes are errors", arguments: [#"a "b"#, "a 'b", #"a\"#])
    func errors(text: String) {
        #expect(throws: ShellWords.Error.self) { _ = try ShellWords.split(text) }
    }
}
