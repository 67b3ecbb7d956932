/// Counting a batch of rows at once: the same state as `add(_:)` and `addIgnoredRow()` row by row, for less.
///
/// Row by row, each of the six sums is an `ExactSum` in memory with an overflow check per value; at small K
/// that costs more than the kernel. Here up to 64 rows' fixed-point forms are added into plain `Int128`s in
/// registers (64 values below 2^120 cannot overflow one) and folded into the sums once per group. Fixed-point
/// forms depend on each value alone and integer addition is exact, so the state is the one `add(_:)` builds,
/// in any batching.
extension MetricAccumulator {
    /// Counts `count` rows: row r is ignored when `labels[r] == ignoreIndex` (its statistics are not read),
    /// else counted from `statistics[r]` as `add(_:)` does.
    public mutating func add(_ statistics: UnsafePointer<RowStatistics>, labels: UnsafePointer<Int64>, count: Int, ignoreIndex: Int64) {
        var start = 0
        while start < count {
            let n = min(64, count - start)
            addGroup(statistics + start, labels: labels + start, count: n, ignoreIndex: ignoreIndex)
            start += n
        }
    }

    /// At most 64 rows (see the type's note).
    @inline(__always)
    mutating func addGroup(_ statistics: UnsafePointer<RowStatistics>, labels: UnsafePointer<Int64>, count: Int, ignoreIndex: Int64) {
        var nll: Int128 = 0, uniform: Int128 = 0, others: Int128 = 0, entropy: Int128 = 0, confidence: Int128 = 0, brier: Int128 = 0
        var ignored: UInt64 = 0, nonfinite: UInt64 = 0, counted: UInt64 = 0, correctRows: UInt64 = 0, hits: UInt64 = 0
        for r in 0..<count {
            if labels[r] == ignoreIndex {
                ignored &+= 1
                continue
            }
            let row = statistics[r]
            guard row.isFinite else {
                nonfinite &+= 1
                continue
            }
            counted &+= 1
            correctRows &+= row.rank == 0 ? 1 : 0
            hits &+= row.rank < topK ? 1 : 0
            // Values of 2^40 or more (never met in practice) go to the sums' wide parts directly.
            if let u = ExactSum.fixedUnits(row.nll) { nll &+= u } else { nllSum.add(row.nll) }
            if let u = ExactSum.fixedUnits(row.uniformTerm) { uniform &+= u } else { uniformSum.add(row.uniformTerm) }
            if let u = ExactSum.fixedUnits(row.othersTerm) { others &+= u } else { othersSum.add(row.othersTerm) }
            if let u = ExactSum.fixedUnits(row.entropy) { entropy &+= u } else { entropySum.add(row.entropy) }
            if let u = ExactSum.fixedUnits(row.confidence) { confidence &+= u } else { confidenceSum.add(row.confidence) }
            if let u = ExactSum.fixedUnits(row.brier) { brier &+= u } else { brierSum.add(row.brier) }
        }
        rows &+= UInt64(count)
        ignoredRows &+= ignored
        nonfiniteRows &+= nonfinite
        countedRows &+= counted
        correct &+= correctRows
        topKHits &+= hits
        nllSum.addFixed(nll)
        uniformSum.addFixed(uniform)
        othersSum.addFixed(others)
        entropySum.addFixed(entropy)
        confidenceSum.addFixed(confidence)
        brierSum.addFixed(brier)
        // Per-row updates that index by the row (the confidence bins) go in this second loop, so that the
        // arrays are opened once per group instead of checked for uniqueness on every row.
        let bins = eceBins
        binCounts.withUnsafeMutableBufferPointer { counts in
            binCorrect.withUnsafeMutableBufferPointer { corrects in
                binConfidence.withUnsafeMutableBufferPointer { sums in
                    for r in 0..<count where labels[r] != ignoreIndex && statistics[r].isFinite {
                        let row = statistics[r]
                        let bin = min(Int(row.confidence * Double(bins)), bins - 1)
                        counts[bin] &+= 1
                        corrects[bin] &+= row.rank == 0 ? 1 : 0
                        sums[bin].add(row.confidence)
                    }
                }
            }
        }
        // Adaptive ECE's fine histogram, as `add(_:)` updates it.
        if confidenceHistogram != nil {
            for r in 0..<count where labels[r] != ignoreIndex && statistics[r].isFinite {
                confidenceHistogram!.add(confidence: statistics[r].confidence, correct: statistics[r].rank == 0)
            }
        }
    }
}
