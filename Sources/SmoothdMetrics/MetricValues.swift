#if canImport(Glibc)
import Glibc
#endif

/// The reported numbers, computed from an accumulator. Every value is nil when no row was counted.
public struct MetricValues: Sendable, Equatable {
    /// Mean loss at the options' ε and mode.
    public var loss: Double?
    /// Mean loss for each ε in `MetricOptions.allSmoothingValues`, in that order.
    public var lossesBySmoothing: [(smoothing: Double, loss: Double?)]
    /// Mean nll.
    public var nll: Double?
    /// exp(mean nll).
    public var perplexity: Double?
    /// Fraction of rows with rank 0.
    public var accuracy: Double?
    /// Fraction of rows with rank < k.
    public var topKAccuracy: Double?
    /// Mean max-probability.
    public var meanConfidence: Double?
    /// Mean entropy.
    public var entropy: Double?
    /// Mean Brier score.
    public var brier: Double?
    /// Expected calibration error.
    public var ece: Double?

    /// Computes the values of `accumulator` under `options`.
    public init(_ accumulator: MetricAccumulator, options: MetricOptions) {
        let values = options.allSmoothingValues
        guard accumulator.countedRows > 0 else {
            lossesBySmoothing = values.map { ($0, nil) }
            return
        }
        let n = Double(accumulator.countedRows)
        let nll = accumulator.nllSum.value / n
        let term = (options.mode == .uniform ? accumulator.uniformSum.value : accumulator.othersSum.value) / n
        func smoothedLoss(_ e: Double) -> Double { (1 - e) * nll + e * term }
        self.nll = nll
        perplexity = exp(nll)
        loss = smoothedLoss(options.smoothing)
        lossesBySmoothing = values.map { ($0, smoothedLoss($0)) }
        accuracy = Double(accumulator.correct) / n
        topKAccuracy = Double(accumulator.topKHits) / n
        meanConfidence = accumulator.confidenceSum.value / n
        entropy = accumulator.entropySum.value / n
        brier = accumulator.brierSum.value / n
        var gap = 0.0
        for b in 0..<accumulator.eceBins where accumulator.binCounts[b] > 0 {
            gap += abs(Double(accumulator.binCorrect[b]) - accumulator.binConfidence[b].value)
        }
        ece = gap / n
    }

    /// Compares all values, the per-ε losses included.
    public static func == (lhs: MetricValues, rhs: MetricValues) -> Bool {
        lhs.loss == rhs.loss && lhs.nll == rhs.nll && lhs.perplexity == rhs.perplexity && lhs.accuracy == rhs.accuracy
            && lhs.topKAccuracy == rhs.topKAccuracy && lhs.meanConfidence == rhs.meanConfidence && lhs.entropy == rhs.entropy
            && lhs.brier == rhs.brier && lhs.ece == rhs.ece
            && lhs.lossesBySmoothing.count == rhs.lossesBySmoothing.count
            && zip(lhs.lossesBySmoothing, rhs.lossesBySmoothing).allSatisfy { $0.smoothing == $1.smoothing && $0.loss == $1.loss }
    }
}
