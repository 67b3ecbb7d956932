import SmoothdKernel

/// The Poisson-bootstrap replicate sums of a state (docs/STATE-FORMAT.md, `bootstrap`): for each of R replicates
/// the sums of the counted rows' statistics, each row weighted by its Poisson(1) weight in that replicate
/// (`PoissonStream`). Counts and weights are integers and the sums `ExactSum`s (a row's value added w times),
/// so replicates merge by addition, in any order, exactly like the main state.
public struct BootstrapState: Sendable, Equatable {
    /// R, the number of replicates.
    public let replicates: Int
    /// B, the ECE bins of every replicate (the state's).
    public let eceBins: Int
    /// Σw over the counted rows, per replicate.
    public var weights: [UInt64]
    /// Σw over the counted rows with rank 0.
    public var correct: [UInt64]
    /// Σw over the counted rows with rank < k.
    public var topKHits: [UInt64]
    /// Σw·nll.
    public var nllSum: [ExactSum]
    /// Σw·U.
    public var uniformSum: [ExactSum]
    /// Σw·W.
    public var othersSum: [ExactSum]
    /// Σw per replicate and bin, replicate-major (index r·B + b).
    public var binWeights: [UInt64]
    /// Σw of the rows with rank 0, per replicate and bin.
    public var binCorrect: [UInt64]
    /// Σw·confidence per replicate and bin.
    public var binConfidence: [ExactSum]

    /// Empty sums for `replicates` replicates of `eceBins` bins.
    public init(replicates: Int, eceBins: Int) {
        precondition(replicates >= 1 && eceBins >= 1)
        self.replicates = replicates
        self.eceBins = eceBins
        weights = Array(repeating: 0, count: replicates)
        correct = weights
        topKHits = weights
        nllSum = Array(repeating: ExactSum(), count: replicates)
        uniformSum = nllSum
        othersSum = nllSum
        binWeights = Array(repeating: 0, count: replicates * eceBins)
        binCorrect = binWeights
        binConfidence = Array(repeating: ExactSum(), count: replicates * eceBins)
    }

    /// Adds a counted (finite) row with the key `rowKey` (`PoissonStream.rowKey`) to every replicate.
    @inline(__always)
    public mutating func add(_ row: RowStatistics, rowKey: UInt64, topK: Int) {
        let nll = ExactSum.fixedUnits(row.nll), uniform = ExactSum.fixedUnits(row.uniformTerm)
        let others = ExactSum.fixedUnits(row.othersTerm), confidence = ExactSum.fixedUnits(row.confidence)
        let isCorrect = row.rank == 0, inTopK = row.rank < topK
        let bin = min(Int(row.confidence * Double(eceBins)), eceBins - 1)
        for r in 0..<replicates {
            let w = PoissonStream.weight(rowKey: rowKey, replicate: r)
            if w == 0 { continue }
            weights[r] &+= w
            if isCorrect { correct[r] &+= w }
            if inTopK { topKHits[r] &+= w }
            nllSum[r].add(row.nll, units: nll, times: w)
            uniformSum[r].add(row.uniformTerm, units: uniform, times: w)
            othersSum[r].add(row.othersTerm, units: others, times: w)
            let cell = r * eceBins + bin
            binWeights[cell] &+= w
            if isCorrect { binCorrect[cell] &+= w }
            binConfidence[cell].add(row.confidence, units: confidence, times: w)
        }
    }

    /// Adds `count` rows of a batch, the first at index `firstRow` of the shard: the counted ones (label not
    /// `ignoreIndex`, finite statistics) with their weights under `seed`.
    public mutating func add(rows statistics: UnsafePointer<RowStatistics>, labels: UnsafePointer<Int64>, count: Int, ignoreIndex: Int64,
                             firstRow: UInt64, seed: UInt64, topK: Int) {
        for i in 0..<count where labels[i] != ignoreIndex && statistics[i].isFinite {
            add(statistics[i], rowKey: PoissonStream.rowKey(seed: seed, row: firstRow + UInt64(i)), topK: topK)
        }
    }

    /// Adds the replicates of `other` (the same R and bins) replicate by replicate.
    /// With `negated`, takes away the replicates of an `other` merged before (exact).
    public mutating func merge(_ other: BootstrapState, negated: Bool = false) {
        precondition(replicates == other.replicates && eceBins == other.eceBins, "merging bootstrap states of different R or bins")
        for r in 0..<replicates {
            weights[r].add(other.weights[r], negated: negated)
            correct[r].add(other.correct[r], negated: negated)
            topKHits[r].add(other.topKHits[r], negated: negated)
            nllSum[r].add(other.nllSum[r], negated: negated)
            uniformSum[r].add(other.uniformSum[r], negated: negated)
            othersSum[r].add(other.othersSum[r], negated: negated)
        }
        for cell in 0..<(replicates * eceBins) where other.binWeights[cell] != 0 {
            binWeights[cell].add(other.binWeights[cell], negated: negated)
            binCorrect[cell].add(other.binCorrect[cell], negated: negated)
            binConfidence[cell].add(other.binConfidence[cell], negated: negated)
        }
    }

    /// Why the replicate sums do not add up, empty when they do: in every replicate `correct` ≤ `top_k_hits` ≤
    /// `weights`, the bins hold `weights` and `correct`, and no bin has more correct weight than weight.
    public var inconsistencies: [String] {
        var problems: [String] = []
        for r in 0..<replicates {
            if !(correct[r] <= topKHits[r] && topKHits[r] <= weights[r]) {
                problems.append("bootstrap replicate \(r): correct \(correct[r]) <= top_k_hits \(topKHits[r]) <= weights \(weights[r]) does not hold")
            }
            var binned: UInt64 = 0, binnedCorrect: UInt64 = 0, overflow = false
            for b in 0..<eceBins {
                let cell = r * eceBins + b
                let (n, oa) = binned.addingReportingOverflow(binWeights[cell])
                let (c, ob) = binnedCorrect.addingReportingOverflow(binCorrect[cell])
                (binned, binnedCorrect, overflow) = (n, c, overflow || oa || ob)
                if binCorrect[cell] > binWeights[cell] { problems.append("bootstrap replicate \(r): bin_correct[\(b)] > bin_weights[\(b)]") }
            }
            if overflow || binned != weights[r] || binnedCorrect != correct[r] {
                problems.append("bootstrap replicate \(r): the bins do not add up to weights \(weights[r]) and correct \(correct[r])")
            }
        }
        return problems
    }
}
