import LSHDFormat
import SmoothdJSON
import SmoothdMetrics
import SmoothdTesting
import Testing

@Test func exactSumIsIndependentOfOrder() {
    var rng = SplitMix(state: 7)
    var values: [Double] = (0..<5000).map { _ in
        Double(sign: Bool.random(using: &rng) ? .minus : .plus, exponent: Int.random(in: -60...60, using: &rng),
               significand: Double.random(in: 1..<2, using: &rng))
    }
    values += [1e300, -1e300, Double.leastNonzeroMagnitude, 0x1p-1030]
    var forward = ExactSum(), backward = ExactSum()
    for v in values { forward.add(v) }
    for v in values.reversed() { backward.add(v) }
    #expect(forward == backward)
    #expect(forward.value == backward.value)
    var halves = ExactSum(), second = ExactSum()
    for v in values[..<2500] { halves.add(v) }
    for v in values[2500...] { second.add(v) }
    halves.add(second)
    #expect(halves == forward)
    // 0.1 added ten times is exactly ten times the double nearest 0.1, which rounds to 1.0
    var tenth = ExactSum()
    for _ in 0..<10 { tenth.add(0.1) }
    #expect(tenth.value == 1.0)
    var cancel = ExactSum()
    cancel.add(1e300); cancel.add(1); cancel.add(-1e300)
    #expect(cancel.value == 1)
}

func randomRow(_ k: Int, _ rng: inout SplitMix) -> [Float] {
    (0..<k).map { _ in Float.random(in: -6...6, using: &rng) }
}

/// Merged per-row accumulators, in any grouping, equal one accumulator over all rows, exactly.
@Test func mergedAccumulatorsEqualOneOverAllRows() throws {
    var rng = SplitMix(state: 42)
    let k = 37
    var whole = MetricAccumulator(topK: 3, eceBins: 15)
    var parts = [MetricAccumulator](repeating: MetricAccumulator(topK: 3, eceBins: 15), count: 7)
    for r in 0..<2000 {
        var row = randomRow(k, &rng)
        if r % 97 == 0 { row[r % k] = .nan }
        let label = Int.random(in: 0..<k, using: &rng)
        let stats = row.withUnsafeBytes { RowKernel.evaluate(row: $0.baseAddress!, dtype: .float32, numClasses: k, label: label) }
        if r % 13 == 0 {
            whole.addIgnoredRow()
            parts[r % 7].addIgnoredRow()
        } else {
            whole.add(stats)
            parts[(r * 31) % 7].add(stats)
        }
    }
    var merged = MetricAccumulator(topK: 3, eceBins: 15)
    for part in parts.reversed() { merged.merge(part) }
    #expect(merged == whole)
    #expect(MetricValues(merged, options: MetricOptions(topK: 3)) == MetricValues(whole, options: MetricOptions(topK: 3)))
    #expect(whole.nonfiniteRows > 0 && whole.ignoredRows > 0)
    let restored = try MetricAccumulator(jsonState: try JSONValue.parse(whole.jsonState().serialized()))
    #expect(restored == whole)
}

/// The AVX2 and baseline builds of the kernel agree on every dtype. They are not bit-identical: the AVX2
/// build fuses multiply-adds, which moves float32 exp by up to an ulp, so they agree to the kernel's own
/// accuracy (the fixture tests hold both to the float64 reference at 1e-6).
@Test func kernelVariantsAgree() {
    var rng = SplitMix(state: 3)
    for k in [2, 15, 16, 17, 100, 1000, 32000] {
        for dtype in LogitDType.allCases {
            let row = randomRow(k, &rng)
            let bytes = LogitEncoding.encode(row, as: dtype) + [UInt8](repeating: 0, count: RowKernel.readSlack)
            let label = Int.random(in: 0..<k, using: &rng)
            let a = bytes.withUnsafeBytes { KernelVariant.baseline.function(for: dtype)($0.baseAddress!, k, label) }
            for variant in KernelVariant.supported {
                let b = bytes.withUnsafeBytes { variant.function(for: dtype)($0.baseAddress!, k, label) }
                #expect(a.rank == b.rank)
                for (x, y) in [(a.nll, b.nll), (a.entropy, b.entropy), (a.brier, b.brier), (a.uniformTerm, b.uniformTerm), (a.confidence, b.confidence)] {
                    #expect(abs(x - y) <= 1e-6 * max(1, abs(y)), "K=\(k) \(dtype) \(variant)")
                }
            }
        }
    }
}

@Test func nonFiniteLogitsAreDetectedInEveryLane() {
    for k in [3, 16, 33] {
        for position in 0..<k {
            for bad in [Float.nan, .infinity, -.infinity] {
                var row = [Float](repeating: 0.5, count: k)
                row[position] = bad
                let stats = row.withUnsafeBytes { RowKernel.evaluate(row: $0.baseAddress!, dtype: .float32, numClasses: k, label: 0) }
                #expect(!stats.isFinite, "K=\(k) position \(position) \(bad)")
            }
        }
    }
}

@Test func optionsReportTheirProblems() {
    #expect(MetricOptions(smoothing: 1.5).problems.count == 1)
    #expect(MetricOptions(topK: 0).problems.count == 1)
    #expect(MetricOptions(eceBins: 0).problems.count == 1)
    #expect(MetricOptions().problems.isEmpty)
    #expect(MetricOptions(smoothing: 0.1, reportSmoothing: [0.1, 0.2]).allSmoothingValues == [0.1, 0.2])
}
