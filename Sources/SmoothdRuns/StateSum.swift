import SmoothdMetrics

/// The merge of some metric states that can also take one of them out again, exactly: ``MetricAccumulator``'s
/// counts and sums subtract exactly, but a missing confidence histogram (a version-1 state) cannot be undone, so the
/// histograms of the states that have one are kept apart from how many have none.
public struct StateSum: Sendable {
    /// The merge of every state added, with the histogram of those that have one.
    private var sum: MetricAccumulator
    /// States added without a confidence histogram.
    private var withoutHistogram = 0

    /// No state, for accumulators of `options`.
    public init(options: MetricOptions) { sum = MetricAccumulator(options: options) }

    /// The merge of the states added: what ``MetricAccumulator/merge(_:)`` of each gives.
    public var accumulator: MetricAccumulator {
        guard withoutHistogram > 0 else { return sum }
        var merged = sum
        merged.confidenceHistogram = nil
        return merged
    }

    /// Whether `state` was computed with the same options (top-k, bins, temperatures, bootstrap) as this sum.
    public func accepts(_ state: MetricAccumulator) -> Bool { sum.hasSameOptions(as: state) }

    /// Adds `state` (computed with the same options).
    public mutating func add(_ state: MetricAccumulator) {
        guard state.confidenceHistogram == nil else { return sum.merge(state) }
        withoutHistogram += 1
        var counted = state
        counted.confidenceHistogram = ConfidenceHistogram()
        sum.merge(counted)
    }

    /// Adds every state of `other`.
    public mutating func add(_ other: StateSum) {
        sum.merge(other.sum)
        withoutHistogram += other.withoutHistogram
    }

    /// Takes out `state`, added before.
    public mutating func remove(_ state: MetricAccumulator) {
        guard state.confidenceHistogram == nil else { return sum.subtract(state) }
        withoutHistogram -= 1
        var counted = state
        counted.confidenceHistogram = ConfidenceHistogram()
        sum.subtract(counted)
    }
}

/// A few of a state's exact figures, kept for each live shard in place of the state: a state read back (to take the
/// shard out of its group) is used only if they match, so a record changed since it was counted is noticed.
public struct StateCheck: Sendable, Equatable {
    private let rows: UInt64, correct: UInt64, topKHits: UInt64
    private let nll: Int128, confidence: Int128

    /// The figures of `state`.
    public init(_ state: MetricAccumulator) {
        rows = state.rows
        correct = state.correct
        topKHits = state.topKHits
        nll = state.nllSum.fixedPart
        confidence = state.confidenceSum.fixedPart
    }
}
