import SmoothdJSON
import Testing

/// Objects and arrays in `JSONValue.parse`: empty and nested containers, and the error (reason and byte offset,
/// counted by hand from the input) for every way a container can be malformed.
@Suite("JSON containers")
struct JSONContainerParsingTests {
    @Test func emptyAndNestedContainers() throws {
        #expect(try JSONValue.parse("{}") == .object([]))
        #expect(try JSONValue.parse("[ ]") == .array([]))
        #expect(try JSONValue.parse(#" { "a" : [ ] , "b" : { } , "c" : [1, [2, {"d": null}]] } "#) == .object([
            ("a", .array([])), ("b", .object([])),
            ("c", .array([.int(1), .array([.int(2), .object([("d", .null)])])])),
        ]))
        // Member order is kept, duplicates and all.
        #expect(try JSONValue.parse(#"{"b":1,"a":2}"#) == .object([("b", .int(1)), ("a", .int(2))]))
    }

    @Test(arguments: [
        (#"{"a":1 "b":2}"#, 7, "expected ',' or '}'"),
        ("[1;2]", 2, "expected ',' or ']'"),
        ("[1,2", 4, "unexpected end of JSON"),
        (#"{"a":1"#, 6, "unexpected end of JSON"),
        (#"{"a":1,}"#, 7, "expected a string key"),
        ("{1:2}", 1, "expected a string key"),
        (#"{"a" 1}"#, 5, "expected ':'"),
        ("[1,]", 3, "unexpected character in JSON"),
        ("[", 1, "unexpected end of JSON"),
        ("[]]", 2, "unexpected data after the JSON value"),
    ])
    func malformedContainerIsRejectedWhereItGoesWrong(_ text: String, _ offset: Int, _ reason: String) {
        expectRejected(text, at: offset, reason)
    }

    func expectRejected(_ text: String, at offset: Int, _ reason: String, sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            let value = try JSONValue.parse(text)
            Issue.record("accepted as \(value)", sourceLocation: sourceLocation)
        } catch {
            #expect(error.offset == offset && error.reason == reason, "\(error)", sourceLocation: sourceLocation)
        }
    }

    @Test func nestingIsBoundedAndCountsBackOutOfClosedContainers() throws {
        let depth = JSONValue.maximumNestingDepth
        // Siblings do not add up: each closed container gives its level back.
        let siblings = "[" + Array(repeating: String(repeating: "[", count: depth - 1) + String(repeating: "]", count: depth - 1), count: 3)
            .joined(separator: ",") + "]"
        #expect(throws: Never.self) { try JSONValue.parse(siblings) }
        // An empty container at the deepest level gives its level back too: `{}` after `[]` is no deeper.
        let empties = String(repeating: "[", count: depth - 1) + "[],{}" + String(repeating: "]", count: depth - 1)
        #expect(throws: Never.self) { try JSONValue.parse(empties) }
        // One level deeper than allowed fails at the bracket that opens it.
        let tooDeep = String(repeating: "[", count: depth + 1) + String(repeating: "]", count: depth + 1)
        expectRejected(tooDeep, at: depth, "JSON nested deeper than \(depth)")
    }
}
