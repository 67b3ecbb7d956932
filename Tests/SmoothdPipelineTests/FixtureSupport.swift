import Foundation
import SmoothdJSON
import SmoothdPipeline
import SmoothdTesting

/// The repository's Fixtures directory, found from this file's path.
let fixturesDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Fixtures")

/// `Fixtures/expected.json`, written by the independent NumPy reference (`Fixtures/make_fixtures.py`).
let expectedDocument: JSONValue = {
    let data = try! Data(contentsOf: fixturesDirectory.appendingPathComponent("expected.json"))
    return try! JSONValue.parse(utf8: data)
}()

struct ValidFixture: CustomTestStringConvertible, Sendable {
    let file: String
    let expected: JSONValue
    var path: String { fixturesDirectory.appendingPathComponent(file).path }
    var testDescription: String { file }
}

struct InvalidFixture: CustomTestStringConvertible, Sendable {
    let file: String
    let kind: FailureKind
    let offset: Int64?
    var path: String { fixturesDirectory.appendingPathComponent(file).path }
    var testDescription: String { file }
}

let validFixtures: [ValidFixture] = expectedDocument["valid"]!.arrayValue!.map {
    ValidFixture(file: $0["file"]!.stringValue!, expected: $0)
}

let invalidFixtures: [InvalidFixture] = expectedDocument["invalid"]!.arrayValue!.map {
    InvalidFixture(file: $0["file"]!.stringValue!, kind: FailureKind(name: $0["kind"]!.stringValue!)!, offset: $0["offset"]!.intValue)
}

/// An entry without its timing field, for bit-identity comparisons.
func withoutTiming(_ entry: JSONValue) -> JSONValue {
    .object(entry.objectMembers!.filter { $0.0 != "seconds" })
}

import Testing
