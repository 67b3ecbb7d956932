import SmoothdJSON
import SmoothdMetrics
import SmoothdTesting
import Testing

/// A compacted histogram (what a finished shard keeps) is the same histogram: equal, the same state, the same
/// adaptive ECE, and merges into the same result as the dense one.
@Test func aCompactedHistogramIsTheSameHistogram() {
    var rng = SplitMix(state: 11)
    var a = ConfidenceHistogram(), b = ConfidenceHistogram()
    for i in 0..<3000 {
        let confidence = i % 7 == 0 ? 1.0 : Double.random(in: 0..<1, using: &rng)
        (i % 2 == 0 ? { a.add(confidence: confidence, correct: i % 3 == 0) } : { b.add(confidence: confidence, correct: i % 5 == 0) })()
    }
    var compactA = a, compactB = b
    compactA.compact()
    compactB.compact()
    #expect(compactA == a)
    #expect(compactA.jsonState.serialized() == a.jsonState.serialized())
    #expect(compactA.adaptiveECE(bins: 15) == a.adaptiveECE(bins: 15))
    #expect(compactA.nonEmptyBins.count < ConfidenceHistogram.binCount)
    var dense = a, sparse = compactA
    dense.merge(b)
    sparse.merge(compactB)
    #expect(sparse == dense)
    #expect(sparse.jsonState.serialized() == dense.jsonState.serialized())
    #expect(sparse.adaptiveECE(bins: 10) == dense.adaptiveECE(bins: 10))
}

/// The byte writer's escapes, written out by hand from RFC 8259 and the documented extras (U+007F, U+2028/2029).
@Test func jsonStringsAreEscapedAsDocumented() {
    let value = JSONValue.object([("k\"ey", .array([.string("a\"b\\c\n\r\t\u{01}\u{1F}\u{7F}\u{2028}\u{2029}\u{85}é€"), .int(-3), .double(0.5), .null]))])
    #expect(value.serialized() == "{\"k\\\"ey\":[\"a\\\"b\\\\c\\n\\r\\t\\u0001\\u001f\\u007f\\u2028\\u2029\u{85}é€\",-3,0.5,null]}")
    #expect(value.serialized(pretty: true) == "{\n  \"k\\\"ey\": [\n    \"a\\\"b\\\\c\\n\\r\\t\\u0001\\u001f\\u007f\\u2028\\u2029\u{85}é€\",\n    -3,\n    0.5,\n    null\n  ]\n}")
    #expect(value.serializedBytes(pretty: true) == Array(value.serialized(pretty: true).utf8))
}
