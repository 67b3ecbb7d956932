import SmoothdJSON

/// A metric that gets a bootstrap interval.
public enum BootstrapMetric: String, CaseIterable, Sendable {
    /// The loss at the options' ε and mode.
    case loss
    /// Mean nll.
    case nll
    /// Fraction of rows with rank 0.
    case accuracy
    /// Fraction of rows with rank < k.
    case topKAccuracy = "top_k_accuracy"
    /// Expected calibration error.
    case ece
}

/// A 95 % percentile interval.
public struct BootstrapInterval: Sendable, Equatable {
    /// The 2.5 % percentile.
    public var lower: Double
    /// The 97.5 % percentile.
    public var upper: Double

    /// An interval.
    public init(lower: Double, upper: Double) {
        self.lower = lower
        self.upper = upper
    }

    /// The 2.5 % and 97.5 % percentiles of `values` with linear interpolation (numpy.percentile's default, its
    /// lerp included); nil for no values.
    public init?(percentilesOf values: [Double]) {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        func percentile(_ p: Double) -> Double {
            let position = p * Double(sorted.count - 1)
            let below = Int(position.rounded(.down))
            let t = position - Double(below)
            guard below + 1 < sorted.count else { return sorted[below] }
            let a = sorted[below], b = sorted[below + 1], d = b - a
            return t >= 0.5 ? b - d * (1 - t) : a + d * t
        }
        self.init(lower: percentile(0.025), upper: percentile(0.975))
    }
}

extension BootstrapState {
    /// Replicate r's metrics (indexed by `BootstrapMetric.allCases`), the metrics of its weighted rows: weighted
    /// means, and ECE from the weighted bins, in the order of `MetricValues`. Nil for a replicate without weight.
    public func replicateMetrics(options: MetricOptions) -> [[Double]?] {
        (0..<replicates).map { r in
            guard weights[r] > 0 else { return nil }
            let n = Double(weights[r])
            let nll = nllSum[r].value / n
            let term = (options.mode == .uniform ? uniformSum[r].value : othersSum[r].value) / n
            var gap = 0.0
            for cell in (r * eceBins)..<((r + 1) * eceBins) where binWeights[cell] > 0 {
                gap += abs(Double(binCorrect[cell]) - binConfidence[cell].value)
            }
            let loss = (1 - options.smoothing) * nll + options.smoothing * term
            return [loss, nll, Double(correct[r]) / n, Double(topKHits[r]) / n, gap / n]
        }
    }
}

/// The bootstrap intervals of a state: for each `BootstrapMetric` the 95 % percentile interval over the replicates
/// that have weight (nil when none has, or a value is not finite).
public struct MetricIntervals: Sendable, Equatable {
    /// The intervals in `BootstrapMetric.allCases` order.
    public var bounds: [BootstrapInterval?]

    /// The intervals of `state` under `options`.
    public init(_ state: BootstrapState, options: MetricOptions) {
        self.init(replicates: state.replicateMetrics(options: options))
    }

    /// The intervals of per-replicate metric values (or of per-replicate differences).
    public init(replicates: [[Double]?]) {
        let present = replicates.compactMap { $0 }
        bounds = BootstrapMetric.allCases.indices.map { m in
            let values = present.map { $0[m] }
            return values.allSatisfy(\.isFinite) ? BootstrapInterval(percentilesOf: values) : nil
        }
    }

    /// The interval of `metric`.
    public subscript(metric: BootstrapMetric) -> BootstrapInterval? {
        bounds[BootstrapMetric.allCases.firstIndex(of: metric)!]
    }
}

extension BootstrapInterval {
    /// `[lower, upper]`.
    public var json: JSONValue { .array([.double(lower), .double(upper)]) }
}

extension MetricIntervals {
    /// `{"loss": [lo, hi], "nll", "accuracy", "top_k_accuracy", "ece"}`, null where no interval exists.
    public var json: JSONValue {
        .object(zip(BootstrapMetric.allCases, bounds).map { ($0.rawValue, $1?.json ?? .null) })
    }
}
