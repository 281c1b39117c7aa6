import Foundation
import Testing

@testable import InferOpsCore

/// `JSONValue(parsing:)` gives what `JSONDecoder` gives, and refuses what it refuses.
@Suite("JSONValue parsing")
struct JSONValueParsingTests {
    static let documents: [String] = [
        #"{"a":1,"b":[true,false,null],"c":{"d":"e"}}"#,
        #"  [ 1 , -2.5 , 3e2 , 4E-2 , -0 , 0.125 , 12345678901234567890 ]  "#,
        #""plain""#,
        #""escapes \" \\ \/ \b \f \n \r \t \u0041 \u00e9 \u20ac \ud83d\ude80 end""#,
        #"{"unicode":"é € 🚀 中文","empty":"","nested":[[[[]]],{}]}"#,
        #"{"plan":{"values":{"replicaCount":2,"podAnnotations":{"inferops.dev/simulate-ready-after-seconds":"20"}},"chart":"vllm-engine","version":"0.1.0"}}"#,
        "true", "false", "null", "0", "-1", "1.5e+3",
        "\t\n\r {\"spaced\" : [ 1 ,\n 2 ] } \n",
    ]

    @Test("documents read as JSONDecoder reads them", arguments: documents)
    func sameAsDecoder(_ document: String) throws {
        let decoded = try JSONDecoder().decode(JSONValue.self, from: Data(document.utf8))
        #expect(try JSONValue(parsing: document) == decoded)
    }

    @Test("a stored plan, canonical text, reads back as itself")
    func canonicalRoundTrip() throws {
        let plan: JSONValue = .object([
            "values": .object(["replicaCount": .number(2), "name": .string("a \"quoted\" \\ value\n"), "on": .bool(true)]),
            "files": .array([.string("a.yaml"), .null]),
        ])
        #expect(try JSONValue(parsing: plan.canonical) == plan)
    }

    static let malformed: [(String, String)] = [
        ("", "the text ends where a value should be"),
        ("{", "an object key must be a string"),
        (#"{"a" 1}"#, "expected `:` after an object key"),
        (#"{"a":1,}"#, "an object key must be a string"),
        ("[1,]", "unexpected character"),
        ("[1 2]", "expected `,` or `]` in an array"),
        (#"{"a":1 "b":2}"#, "expected `,` or `}` in an object"),
        ("01", "unexpected text after the value"),
        ("1.", "a fraction needs a digit"),
        ("1e", "an exponent needs a digit"),
        ("-", "a number needs a digit"),
        ("1e999", "the number is out of range"),
        ("tru", "unexpected end of the text"),
        ("nul!", "unexpected character"),
        (#""open"#, "a string is not closed"),
        ("\"tab\tinside\"", "a control character must be escaped in a string"),
        (#""\x""#, "an unknown escape"),
        (#""\u12""#, #"a \u escape needs four hex digits"#),
        (#""\ud83d""#, "a high surrogate without its low surrogate"),
        (#""\ude80""#, "a low surrogate without its high surrogate"),
        ("[] []", "unexpected text after the value"),
        ("'single'", "unexpected character"),
    ]

    @Test("malformed text is refused with the offset and the reason", arguments: malformed)
    func refused(_ document: String, _ reason: String) {
        #expect(throws: JSONValue.ParseError.self) { try JSONValue(parsing: document) }
        do {
            _ = try JSONValue(parsing: document)
        } catch let error as JSONValue.ParseError {
            #expect(error.reason == reason)
        } catch {
            Issue.record("unexpected \(error)")
        }
        // JSONDecoder refuses it too, except trailing commas, which it lets pass and RFC 8259 does not.
        if !["{\"a\":1,}", "[1,]"].contains(document) {
            #expect(throws: (any Error).self) { try JSONDecoder().decode(JSONValue.self, from: Data(document.utf8)) }
        }
    }

    @Test("invalid UTF-8 in a string is refused")
    func invalidUTF8() {
        let bytes: [UInt8] = [0x22, 0x61, 0xFF, 0x62, 0x22]
        #expect(throws: JSONValue.ParseError(offset: 5, reason: "a string is not valid UTF-8")) {
            try JSONValue(parsing: bytes)
        }
    }

    @Test("nesting deeper than 512 levels is refused, 512 is read")
    func nesting() throws {
        let deepest = String(repeating: "[", count: 512) + String(repeating: "]", count: 512)
        _ = try JSONValue(parsing: deepest)
        let tooDeep = String(repeating: "[", count: 513) + String(repeating: "]", count: 513)
        #expect(throws: JSONValue.ParseError(offset: 512, reason: "nested too deeply")) { try JSONValue(parsing: tooDeep) }
    }
}
