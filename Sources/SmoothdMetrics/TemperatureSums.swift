import SmoothdJSON

/// The exact sums of one temperature of a sweep: the per-row statistics of softmax(z/T) and equal-width
/// confidence bins, mergeable like every other part of a `MetricAccumulator`.
public struct TemperatureSums: Sendable, Equatable {
    /// The temperature T.
    public let temperature: Double
    /// Σ nll_T.
    public var nllSum = ExactSum()
    /// Σ U_T.
    public var uniformSum = ExactSum()
    /// Σ W_T.
    public var othersSum = ExactSum()
    /// Σ max q.
    public var confidenceSum = ExactSum()
    /// Σ entropy_T.
    public var entropySum = ExactSum()
    /// Σ Brier_T.
    public var brierSum = ExactSum()
    /// Σ d nll_T/dβ.
    public var slopeSum = ExactSum()
    /// Σ d² nll_T/dβ².
    public var curvatureSum = ExactSum()
    /// Rows per confidence bin (the accumulator's ECE bins).
    public var binCounts: [UInt64]
    /// Correct rows per bin.
    public var binCorrect: [UInt64]
    /// Σ max q per bin.
    public var binConfidence: [ExactSum]

    /// Empty sums for `temperature` with `eceBins` bins.
    public init(temperature: Double, eceBins: Int) {
        self.temperature = temperature
        binCounts = Array(repeating: 0, count: eceBins)
        binCorrect = Array(repeating: 0, count: eceBins)
        binConfidence = Array(repeating: ExactSum(), count: eceBins)
    }

    /// Counts one row's statistics at this temperature; `correct` is rank 0 (the same at every T).
    @inline(__always)
    public mutating func add(_ row: TemperatureRowStatistics, correct: Bool) {
        nllSum.add(row.nll)
        uniformSum.add(row.uniformTerm)
        othersSum.add(row.othersTerm)
        confidenceSum.add(row.confidence)
        entropySum.add(row.entropy)
        brierSum.add(row.brier)
        slopeSum.add(row.slope)
        curvatureSum.add(row.curvature)
        let bins = binCounts.count
        let bin = min(Int(row.confidence * Double(bins)), bins - 1)
        binCounts[bin] &+= 1
        if correct { binCorrect[bin] &+= 1 }
        binConfidence[bin].add(row.confidence)
    }

    /// Adds `other` (same temperature and bins), or with `negated` takes away an `other` merged before (exact).
    public mutating func merge(_ other: TemperatureSums, negated: Bool = false) {
        for (_, sum) in TemperatureSums.sums { self[keyPath: sum].add(other[keyPath: sum], negated: negated) }
        for b in binCounts.indices {
            binCounts[b].add(other.binCounts[b], negated: negated)
            binCorrect[b].add(other.binCorrect[b], negated: negated)
            binConfidence[b].add(other.binConfidence[b], negated: negated)
        }
    }

    /// The state members of the sums, in state order.
    static var sums: [(String, WritableKeyPath<TemperatureSums, ExactSum>)] { [
        ("nll_sum", \.nllSum), ("uniform_sum", \.uniformSum), ("others_sum", \.othersSum), ("confidence_sum", \.confidenceSum),
        ("entropy_sum", \.entropySum), ("brier_sum", \.brierSum), ("slope_sum", \.slopeSum), ("curvature_sum", \.curvatureSum),
    ] }

    /// `{"temperature", "nll_sum", …, "curvature_sum", "bin_counts", "bin_correct", "bin_confidence"}` (docs/STATE-FORMAT.md).
    public var jsonState: JSONValue {
        .object([("temperature", .double(temperature))] + TemperatureSums.sums.map { ($0.0, self[keyPath: $0.1].jsonState) } + [
            ("bin_counts", .array(binCounts.map { .int(Int64($0)) })),
            ("bin_correct", .array(binCorrect.map { .int(Int64($0)) })),
            ("bin_confidence", .array(binConfidence.map(\.jsonState))),
        ])
    }

    /// Reads `jsonState` for `eceBins` bins; errors name the member under `key` (`temperatures[0].nll_sum`, …).
    public init(jsonState state: JSONValue, eceBins: Int, key: String) throws(MetricStateError) {
        guard let t = state["temperature"]?.doubleValue, t > 0, t.isFinite else {
            throw MetricStateError("\(key).temperature: missing or not a number > 0")
        }
        self.init(temperature: t, eceBins: eceBins)
        for (name, path) in TemperatureSums.sums { self[keyPath: path] = try ExactSum(stateMember: state[name], key: "\(key).\(name)") }
        func list(_ name: String) throws(MetricStateError) -> [JSONValue] {
            guard let values = state[name]?.arrayValue, values.count == eceBins else {
                throw MetricStateError("\(key).\(name): missing, or not an array of ece_bins (\(eceBins)) values")
            }
            return values
        }
        let counts = try list("bin_counts"), corrects = try list("bin_correct"), confidences = try list("bin_confidence")
        for b in 0..<eceBins {
            guard let count = counts[b].intValue, count >= 0, let correct = corrects[b].intValue, correct >= 0, correct <= count else {
                throw MetricStateError("\(key).bin_counts[\(b)] / bin_correct[\(b)]: not integers with 0 <= correct <= count")
            }
            binCounts[b] = UInt64(count)
            binCorrect[b] = UInt64(correct)
            binConfidence[b] = try ExactSum(stateMember: confidences[b], key: "\(key).bin_confidence[\(b)]")
        }
    }
}

extension ExactSum {
    /// Reads a state member written by `jsonState`, naming `key` in errors. Nearly every sum has no wide part: it is
    /// read without building (and normalizing) an empty superaccumulator.
    public init(stateMember value: JSONValue?, key: String) throws(MetricStateError) {
        guard let value else { throw MetricStateError("\(key): missing") }
        if value["wide"]?.arrayValue?.isEmpty == true, let text = value["fixed"]?.stringValue, let fixed = Int128(text) {
            self.init()
            self.fixed = fixed
            return
        }
        do { try self.init(jsonState: value) } catch { throw MetricStateError("\(key): \(error.description)") }
    }
}
