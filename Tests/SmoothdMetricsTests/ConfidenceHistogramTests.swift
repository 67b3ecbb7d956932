import SmoothdJSON
import SmoothdMetrics
import SmoothdTesting
import Testing

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
