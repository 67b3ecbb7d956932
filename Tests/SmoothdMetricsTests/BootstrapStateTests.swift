import SmoothdJSON
import SmoothdKernel
import SmoothdMetrics
import SmoothdTesting
import Testing

/// Rows of made-up statistics (a deterministic sequence), large values included so the wide sums take part.
func syntheticRows(_ count: Int) -> [RowStatistics] {
    (0..<count).map { i in
        let x = Double((i * 7919) % 1000) / 1000
        let nll = i % 97 == 0 ? 3e12 : Double(i % 50) / 10 + x
        return RowStatistics(isFinite: true, nll: nll, uniformTerm: nll + 0.5, othersTerm: nll + 0.25, entropy: 1, confidence: x,
                             brier: 1 - x, rank: i % 4)
    }
}

/// Adds `rows` with the shard's row indexes `range` to a fresh state.
func bootstrapped(_ rows: [RowStatistics], _ range: Range<Int>, options: MetricOptions, seed: UInt64) -> MetricAccumulator {
    var state = MetricAccumulator(options: options)
    let labels = [Int64](repeating: 1, count: range.count)
    for i in range { state.add(rows[i]) }
    rows[range].withUnsafeBufferPointer { statistics in
        labels.withUnsafeBufferPointer { labels in
            state.bootstrap!.add(rows: statistics.baseAddress!, labels: labels.baseAddress!, count: range.count, ignoreIndex: -100,
                                 firstRow: UInt64(range.lowerBound), seed: seed, topK: options.topK)
        }
    }
    return state
}

@Test func poissonWeightsHaveThePoissonOneDistribution() {
    // 10^6 draws: mean and variance 1, P(0) = P(1) = 1/e, P(2) = 1/(2e); bounds are ~6 standard errors.
    var counts = [Int](repeating: 0, count: 21)
    var sum = 0.0, squares = 0.0
    let seed = PoissonStream.seed(shardIndex: 3, name: "x")
    for row in 0..<50_000 {
        let key = PoissonStream.rowKey(seed: seed, row: UInt64(row))
        for r in 0..<20 {
            let w = Int(PoissonStream.weight(rowKey: key, replicate: r))
            counts[w] += 1
            sum += Double(w)
            squares += Double(w * w)
        }
    }
    let n = 1_000_000.0, mean = sum / n
    #expect(abs(mean - 1) < 0.006)
    #expect(abs(squares / n - mean * mean - 1) < 0.01)
    let e = 2.718281828459045
    #expect(abs(Double(counts[0]) / n - 1 / e) < 0.003)
    #expect(abs(Double(counts[1]) / n - 1 / e) < 0.003)
    #expect(abs(Double(counts[2]) / n - 1 / (2 * e)) < 0.002)
    // Seeds: the shard_index wins over the name; the name's directory does not count.
    #expect(PoissonStream.seed(shardIndex: 3, name: "a") == PoissonStream.seed(shardIndex: 3, name: "b"))
    #expect(PoissonStream.seed(shardIndex: nil, name: "x/y.lshd.zst") == PoissonStream.seed(shardIndex: nil, name: "z/y.lshd.zst"))
    #expect(PoissonStream.seed(shardIndex: nil, name: "y.lshd.zst") != PoissonStream.seed(shardIndex: 0, name: "y.lshd.zst"))
}

@Test func splitBootstrapStatesMergeToTheWhole() throws {
    let options = MetricOptions(eceBins: 7, bootstrapReplicates: 13)
    let rows = syntheticRows(3000)
    let whole = bootstrapped(rows, 0..<3000, options: options, seed: 42)
    var merged = bootstrapped(rows, 2000..<3000, options: options, seed: 42)
    merged.merge(bootstrapped(rows, 0..<700, options: options, seed: 42))
    merged.merge(bootstrapped(rows, 700..<2000, options: options, seed: 42))
    #expect(merged == whole)
    #expect(whole.inconsistencies.isEmpty)
    #expect(whole.bootstrap!.nllSum[0].value > 1e12)  // the large values went through the wide part
    // The state round-trips through its JSON, and the weights are those of the rows' indexes.
    let restored = try MetricAccumulator(jsonState: whole.jsonState())
    #expect(restored == whole && restored.jsonState() == whole.jsonState())
    var total: UInt64 = 0
    for i in 0..<3000 { total += PoissonStream.weight(rowKey: PoissonStream.rowKey(seed: 42, row: UInt64(i)), replicate: 4) }
    #expect(whole.bootstrap!.weights[4] == total)
    #expect(bootstrapped(rows, 0..<3000, options: options, seed: 43).bootstrap != whole.bootstrap)
}

@Test func badBootstrapStatesNameTheMember() throws {
    let options = MetricOptions(eceBins: 3, bootstrapReplicates: 2)
    let state = bootstrapped(syntheticRows(50), 0..<50, options: options, seed: 1).jsonState()
    func replacing(_ key: String, _ value: JSONValue) -> JSONValue {
        let bootstrap = state["bootstrap"]!.objectMembers!.map { $0.0 == key ? ($0.0, value) : $0 }
        return .object(state.objectMembers!.map { $0.0 == "bootstrap" ? ($0.0, .object(bootstrap)) : $0 })
    }
    func message(_ value: JSONValue) -> String {
        do {
            let restored = try MetricAccumulator(jsonState: value)
            return restored.inconsistencies.joined(separator: "; ")
        } catch { return error.description }
    }
    #expect(message(replacing("weights", .array([.int(1)]))) == "bootstrap.weights: missing, or not an array of 2 values")
    #expect(message(replacing("nll_sum", .array([.int(1), .int(2)]))).hasPrefix("bootstrap.nll_sum[0]: bad exact sum"))
    #expect(message(replacing("bin_weights", .array([.array([.int(0), .int(0), .int(0)]), .array([.int(0), .int(-1), .int(0)])])))
        == "bootstrap.bin_weights[1][1]: -1 is not an integer >= 0")
    #expect(message(replacing("replicates", .int(0))).hasPrefix("bootstrap.replicates: missing, or not an integer in [1, 10000]"))
    #expect(message(replacing("correct", .array([.int(10_000), .int(0)]))).contains("bootstrap replicate 0: correct 10000 <= top_k_hits"))
    #expect(MetricOptions(bootstrapReplicates: 10_001).problems == ["bootstrap must be in [1, 10000] (got 10001)"])
    #expect(MetricOptions(eceBins: 1000, bootstrapReplicates: 251).problems.first?.contains("is over 250000") == true)
}

@Test func percentilesInterpolateLikeNumPy() {
    // numpy.percentile([10, 1, 4, 3, 2], [2.5, 97.5]) prints [1.1, 9.399999999999999] (positions 0.1 and 3.9 of the
    // sorted values; numpy's lerp computes the upper one as 10 − 6·(1 − t)): the same bits.
    let interval = BootstrapInterval(percentilesOf: [10, 1, 4, 3, 2])!
    #expect(interval.lower == 1.1 && interval.upper == 9.399999999999999)
    #expect(BootstrapInterval(percentilesOf: [5]) == BootstrapInterval(lower: 5, upper: 5))
    #expect(BootstrapInterval(percentilesOf: []) == nil)
}

@Test func labelDigestsCombineInFileOrder() {
    let labels: [Int64] = [3, -100, 0, 7, 7, 1 << 62, -1, 2]
    func digest(_ part: ArraySlice<Int64>) -> LabelDigest {
        var d = LabelDigest()
        Array(part).withUnsafeBufferPointer { d.add($0) }
        return d
    }
    let whole = digest(labels[...])
    for cut in 0...labels.count {
        var joined = digest(labels[..<cut])
        joined.append(digest(labels[cut...]))
        #expect(joined == whole, "cut \(cut)")
    }
    #expect(LabelDigest(json: whole.json) == whole)
    var swapped = labels
    swapped.swapAt(0, 2)
    #expect(digest(swapped[...]) != whole)
    #expect(LabelDigest(json: .object([("rows", .int(1)), ("hash", .string("zz"))])) == nil)
}

/// The digest of any number of labels (the four-at-a-time steps and the tail) is the documented
/// h = Σ v_i · B^(n−1−i) mod p, computed here one term at a time with `%`, and digests of parts cut anywhere append to it.
@Test func labelDigestMatchesItsDefinition() {
    var rng = SplitMix(state: 41)
    let p: UInt64 = (1 << 61) - 1
    func mulmod(_ a: UInt64, _ b: UInt64) -> UInt64 { UInt64((UInt128(a) * UInt128(b)) % UInt128(p)) }
    for n in [0, 1, 3, 4, 5, 8, 13, 64, 1001] {
        let labels: [Int64] = (0..<n).map { i in
            switch i % 5 {
            case 0: return -100
            case 1: return Int64(bitPattern: rng.next())  // any 64 bits, p − 1 and the wrap to 0 included below
            case 2: return Int64(p) - 1
            default: return Int64.random(in: 0..<50_000, using: &rng)
            }
        }
        var expected: UInt64 = 0
        for label in labels {
            let v = (UInt64(bitPattern: label) % p + 1) % p
            expected = (mulmod(expected, LabelDigest.base) + v) % p
        }
        var digest = LabelDigest()
        labels.withUnsafeBufferPointer { digest.add($0) }
        #expect(digest.hash == expected && digest.rows == UInt64(n), "n = \(n)")
        let cut = n / 3
        var joined = LabelDigest()
        labels[..<cut].withUnsafeBufferPointer { joined.add($0) }
        var rest = LabelDigest()
        labels[cut...].withUnsafeBufferPointer { rest.add($0) }
        joined.append(rest)
        #expect(joined == digest && LabelDigest(rows: digest.rows, hash: digest.hash) == digest, "n = \(n)")
    }
}
