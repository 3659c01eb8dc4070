import Foundation
import Testing
@testable import WorkerExecution

@Suite("JSONSyntax")
struct JSONSyntaxTests {
    static func isObject(_ text: String) -> Bool {
        Array(text.utf8).withUnsafeBufferPointer { JSONSyntax.isStorableObject($0) }
    }

    static let valid = [
        "{}", " { } ", #"{"a":1}"#, #"{"a":[1,2.5,-3e+2,0,-0.0,1E9],"b":{"c":null,"d":true,"e":false}}"#,
        #"{"s":"tab\tquote\"slash\/back\\ \b\f\n\r"}"#, #"{"u":"\u00e9\u4e2d\ud83d\ude00"}"#, "{\"k\":\"caf\u{e9} \u{1F600}\"}",
        #"{"type":"assistant","message":{"content":[{"type":"text","text":"hi"}]}}"#, "{\"a\" :\n[ ] ,\"b\":{ }}",
    ]

    static let invalid = [
        "", "[]", "1", #""s""#, "{", "}", "{}}", "{} {}", #"{"a":1,}"#, #"{"a" 1}"#, "{'a':1}", #"{a:1}"#,
        #"{"a":01}"#, #"{"a":1.}"#, #"{"a":.5}"#, #"{"a":-}"#, #"{"a":1e}"#, #"{"a":+1}"#, #"{"a":tru}"#, #"{"a":nul}"#,
        #"{"a":"unterminated}"#, "{\"a\":\"raw\ttab\"}", "{\"a\":\"raw\nnewline\"}", #"{"a":"\x"}"#, #"{"a":"\u12"}"#,
        #"{"a":[1,2}"#, #"{"a":[1,,2]}"#, #"{"a":NaN}"#,
    ]

    @Test("accepts what JSONSerialization parses as an object")
    func acceptsObjects() {
        for text in Self.valid {
            #expect(Self.isObject(text), "\(text)")
            #expect((try? JSONSerialization.jsonObject(with: Data(text.utf8))) is [String: Any], "the corpus itself: \(text)")
        }
    }

    @Test("refuses what is not one JSON object")
    func refusesOthers() {
        for text in Self.invalid {
            #expect(!Self.isObject(text), "\(text)")
            // Foundation's parser takes a trailing comma; PostgreSQL (and RFC 8259) do not.
            if text != #"{"a":1,}"# {
                #expect(!((try? JSONSerialization.jsonObject(with: Data(text.utf8))) is [String: Any]), "the corpus itself: \(text)")
            }
        }
    }

    @Test("refuses the valid JSON that PostgreSQL's jsonb refuses: \\u0000 and unpaired surrogate escapes")
    func refusesWhatPostgresRefuses() {
        for text in [#"{"a":"\u0000"}"#, #"{"a":"\ud83d"}"#, #"{"a":"\ude00"}"#, #"{"a":"\ud83dx"}"#, #"{"a":"\ud83d\ud83d"}"#] {
            #expect(!Self.isObject(text), "\(text)")
        }
    }

    @Test("numbers as PostgreSQL's numeric holds them: 131,072 digits before the point, 16,383 after, once the exponent is applied")
    func numbersPostgresHolds() {
        // Each as PostgreSQL 15 answered it (`SELECT '{"a":...}'::jsonb`). Before, every valid
        // number passed, and a line holding `1e999999` was refused by the database whole.
        let held = ["1e131071", "5e131071", "1.5e131071", "0.001e131074", "1e-16383", "0e999999", "-2.5e-3",
                    "1" + String(repeating: "0", count: 131_071), "0." + String(repeating: "0", count: 16_382) + "1"]
        let refused = ["1e131072", "10e131071", "0.001e131075", "1e-16384", "1.000e-16381", "0e-20000", "1e999999", "1e9999999999999",
                       "1" + String(repeating: "0", count: 131_072), "0." + String(repeating: "0", count: 16_384)]
        for number in held { #expect(Self.isObject(#"{"a":\#(number)}"#), "\(number.prefix(40))") }
        for number in refused { #expect(!Self.isObject(#"{"a":\#(number)}"#), "\(number.prefix(40))") }
    }

    @Test("bounds the nesting depth")
    func boundsDepth() {
        let deep = String(repeating: #"{"a":"#, count: 600) + "1" + String(repeating: "}", count: 600)
        #expect(!Self.isObject(deep))
        let fine = String(repeating: #"{"a":"#, count: 100) + "1" + String(repeating: "}", count: 100)
        #expect(Self.isObject(fine))
    }
}
