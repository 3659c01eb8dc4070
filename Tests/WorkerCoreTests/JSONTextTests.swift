import Foundation
import Testing
import WorkerCore

/// The hand-written JSON and id text of the hot paths, checked against Foundation's.
@Suite("JSONText and UUID text")
struct JSONTextTests {
    @Test("a string literal parses back to the same string: quotes, backslashes, control characters, slashes, non-ASCII", arguments: [
        "", "plain", "quote \" backslash \\ slash /", "newline \n return \r tab \t bell \u{07} nul \u{00} escape \u{1B}",
        "ü 日本 🙂", String(repeating: "long \"x\" ", count: 500),
    ])
    func roundTrip(text: String) throws {
        let literal = JSONText.quoted(text)
        let parsed = try JSONSerialization.jsonObject(with: Data(literal.utf8), options: [.fragmentsAllowed]) as? String
        #expect(parsed == text)
    }

    @Test("numbers are recognised as JSON numbers, nothing else is")
    func numbers() {
        for text in ["0", "-0", "42", "-17", "1.5", "0.25", "1e3", "2.5E-4", "-3e+2"] { #expect(JSONText.isNumber(text), "\(text)") }
        for text in ["", "-", "01", "1.", ".5", "1e", "nan", "inf", "+1", "1 ", "0x10", "true", "12a"] { #expect(!JSONText.isNumber(text), "\(text)") }
    }

    @Test("an id's lower-case text is Foundation's, lower-cased")
    func uuidText() {
        for id in [UUID(), UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)), UUID(uuid: (255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255))]
            + UUID.timeOrdered(count: 5) {
            #expect(id.lowercasedText == id.uuidString.lowercased())
        }
    }
}
