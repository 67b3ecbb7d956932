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
    /// Maximum calibration error: the largest |accuracy − mean confidence| over the non-empty bins.
    public var mce: Double?
    /// The confidence bins ECE and MCE are computed from, lowest first (empty ones included).
    public var reliability: [ReliabilityBin]
    /// Adaptive (equal-mass) ECE from the confidence histogram; nil also when part of the state is version 1.
    public var adaptiveECE: Double?
    /// The sweep's metrics per temperature, in `MetricOptions.allTemperatures` order (empty without a sweep).
    public var byTemperature: [TemperatureValues] = []
    /// The best temperature (nil without a sweep or counted rows).
    public var bestTemperature: BestTemperature?

    /// Computes the values of `accumulator` under `options`.
    public init(_ accumulator: MetricAccumulator, options: MetricOptions) {
        let values = options.allSmoothingValues
        reliability = (0..<accumulator.eceBins).map { ReliabilityBin(accumulator, bin: $0) }
        guard accumulator.countedRows > 0 else {
            lossesBySmoothing = values.map { ($0, nil) }
            computeStatistics(accumulator, options: options)
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
        (ece, mce) = MetricValues.calibration(counts: accumulator.binCounts, correct: accumulator.binCorrect, confidence: accumulator.binConfidence, rows: n)
        computeStatistics(accumulator, options: options)
    }

    /// Compares all values, the per-ε losses included.
    public static func == (lhs: MetricValues, rhs: MetricValues) -> Bool {
        lhs.loss == rhs.loss && lhs.nll == rhs.nll && lhs.perplexity == rhs.perplexity && lhs.accuracy == rhs.accuracy
            && lhs.topKAccuracy == rhs.topKAccuracy && lhs.meanConfidence == rhs.meanConfidence && lhs.entropy == rhs.entropy
            && lhs.brier == rhs.brier && lhs.ece == rhs.ece && lhs.mce == rhs.mce && lhs.reliability == rhs.reliability
            && lhs.adaptiveECE == rhs.adaptiveECE && lhs.byTemperature == rhs.byTemperature && lhs.bestTemperature == rhs.bestTemperature
            && lhs.lossesBySmoothing.count == rhs.lossesBySmoothing.count
            && zip(lhs.lossesBySmoothing, rhs.lossesBySmoothing).allSatisfy { $0.smoothing == $1.smoothing && $0.loss == $1.loss }
    }
}

/// One confidence bin of a reliability diagram: rows whose max-probability lies in [lower, upper)
/// (the last bin includes 1).
public struct ReliabilityBin: Sendable, Equatable {
    /// Lower confidence edge.
    public var lower: Double
    /// Upper confidence edge.
    public var upper: Double
    /// Counted rows in the bin.
    public var count: UInt64
    /// Fraction of the bin's rows with rank 0; nil for an empty bin.
    public var accuracy: Double?
    /// Mean max-probability of the bin's rows; nil for an empty bin.
    public var meanConfidence: Double?

    /// Bin `bin` of `accumulator`.
    public init(_ accumulator: MetricAccumulator, bin: Int) {
        let bins = Double(accumulator.eceBins)
        lower = Double(bin) / bins
        upper = Double(bin + 1) / bins
        count = accumulator.binCounts[bin]
        guard count > 0 else { return }
        accuracy = Double(accumulator.binCorrect[bin]) / Double(count)
        meanConfidence = accumulator.binConfidence[bin].value / Double(count)
    }
}
