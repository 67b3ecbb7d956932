import SmoothdJSON
import Testing

/// `JSONValue.parse(utf8:keepingMembers:)`: only the named top-level members are built; the others are still
/// checked, so every malformed document is rejected with the same reason and byte offset (counted by hand) as the
/// full parser gives.
@Suite("JSON parsing that skips members")
struct JSONSkippingTests {
    func parse(_ text: String, keeping keep: Set<String>) throws(JSONParseError) -> JSONValue {
        try JSONValue.parse(utf8: Array(text.utf8), keepingMembers: keep)
    }

    @Test func onlyTheNamedTopLevelMembersAreKept() throws {
        let text = #"{"a": 1, "skip": {"x": [1.5e3, "\u00e9\ud83d\ude00", true, null, {"a": "nested a is not top-level"}]}, "b": {"a": 2}, "c": "é"}"#
        #expect(try parse(text, keeping: ["a", "b"]) == .object([("a", .int(1)), ("b", .object([("a", .int(2))]))]))
        #expect(try parse(text, keeping: []) == .object([]))
        #expect(try parse(text, keeping: ["c", "zz"]) == .object([("c", .string("é"))]))
        // Not an object: returned whole.
        #expect(try parse("[1, {\"a\": 2}]", keeping: []) == .array([.int(1), .object([("a", .int(2))])]))
    }

    @Test(arguments: [
        (#"{"s": "\x"}"#, 9, "invalid escape in string"),
        (#"{"s": "abc"#, 10, "unterminated string"),
        ("{\"s\": \"a\u{01}\"}", 8, "control character in string"),
        (#"{"s": "\ud800x"}"#, 13, "unpaired surrogate in string"),
        (#"{"s": [1, 2,]}"#, 12, "unexpected character in JSON"),
        (#"{"s": {"k" 1}}"#, 11, "expected ':'"),
        (#"{"s": 01}"#, 7, "expected ',' or '}'"),
        (#"{"s": -}"#, 7, "invalid number"),
        (#"{"s": tru}"#, 6, "invalid literal"),
        (#"{"s": 1} x"#, 9, "unexpected data after the JSON value"),
    ])
    func malformedSkippedMembersAreRejected(_ text: String, _ offset: Int, _ reason: String) {
        expectRejected(Array(text.utf8), at: offset, reason)
    }

    @Test func invalidUTF8AndDeepNestingInSkippedMembersAreRejected() {
        expectRejected(Array(#"{"s": ""#.utf8) + [0xC3, 0x28] + Array(#""}"#.utf8), at: 7, "invalid UTF-8")
        let depth = JSONValue.maximumNestingDepth
        let deep = #"{"s": "# + String(repeating: "[", count: depth) + String(repeating: "]", count: depth) + "}"
        expectRejected(Array(deep.utf8), at: 6 + depth - 1, "JSON nested deeper than \(depth)")
    }

    func expectRejected(_ bytes: [UInt8], at offset: Int, _ reason: String, sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            let value = try JSONValue.parse(utf8: bytes, keepingMembers: [])
            Issue.record("accepted as \(value)", sourceLocation: sourceLocation)
        } catch {
            #expect(error.offset == offset && error.reason == reason, "\(error)", sourceLocation: sourceLocation)
        }
    }
}
