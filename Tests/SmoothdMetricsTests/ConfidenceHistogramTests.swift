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

/// A histogram stays sparse for a few bins and turns dense beyond `sparseLimit`: every path between the two forms
/// (adding row by row, merging small parts, sparse into dense, dense into sparse, a state read back) must count
/// each row in its bin exactly as a plain per-bin tally of the same rows does.
@Test(arguments: [1, 3, 32, 200, 5000])
func histogramInPartsEqualsPlainTally(partSize: Int) throws {
    var rng = SplitMix(state: UInt64(partSize))
    // Confidences over the whole range, many near 1 (the octave bins), so more than 64 bins fill up.
    let rows: [(Double, Bool)] = (0..<6000).map { i in
        let u = Double.random(in: 0..<1, using: &rng)
        let confidence = i % 3 == 0 ? 1 - Double.random(in: 0..<1, using: &rng) * 0x1p-20 * u : u
        return (confidence, Bool.random(using: &rng))
    }
    var tally: [Int: (count: UInt64, correct: UInt64, sum: ExactSum)] = [:]
    for (confidence, correct) in rows {
        var bin = tally[ConfidenceHistogram.index(confidence), default: (0, 0, ExactSum())]
        bin.count += 1
        bin.correct += correct ? 1 : 0
        bin.sum.add(confidence)
        tally[ConfidenceHistogram.index(confidence)] = bin
    }
    #expect(tally.count > 200, "the rows must fill far more bins than stay sparse")
    var merged = ConfidenceHistogram()
    var start = 0
    while start < rows.count {
        var part = ConfidenceHistogram()
        for (confidence, correct) in rows[start..<min(rows.count, start + partSize)] { part.add(confidence: confidence, correct: correct) }
        // Every other part goes through its JSON state (read back sparse) before the merge.
        if (start / partSize) % 2 == 1 { part = try ConfidenceHistogram(jsonState: part.jsonState) }
        merged.merge(part)
        start += partSize
    }
    let bins = merged.nonEmptyBins
    #expect(bins.map(\.index) == tally.keys.sorted())
    for (index, bin) in bins {
        let expected = try #require(tally[index])
        #expect(bin.count == expected.count && bin.correct == expected.correct && bin.confidence == expected.sum, "bin \(index)")
    }
    var whole = ConfidenceHistogram()
    for (confidence, correct) in rows { whole.add(confidence: confidence, correct: correct) }
    #expect(merged == whole)
    #expect(merged.jsonState.serialized() == whole.jsonState.serialized())
    // Adding rows to a state read back from JSON (sparse, beyond the limit) counts them too.
    var continued = try ConfidenceHistogram(jsonState: whole.jsonState)
    continued.add(confidence: 0.25, correct: true)
    #expect(continued.count == UInt64(rows.count) + 1)
}
