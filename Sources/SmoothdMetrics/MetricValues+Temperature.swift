#if canImport(Glibc)
import Glibc
#endif

/// The metrics of softmax(z/T) for one temperature of the sweep (nil when no row was counted).
public struct TemperatureValues: Sendable, Equatable {
    /// T.
    public var temperature: Double
    /// Mean nll_T.
    public var nll: Double?
    /// Mean loss_T at the options' ε and mode.
    public var loss: Double?
    /// Mean max q.
    public var meanConfidence: Double?
    /// ECE over the options' equal-width bins.
    public var ece: Double?
    /// MCE over them.
    public var mce: Double?
    /// Mean Brier score.
    public var brier: Double?
    /// Mean entropy.
    public var entropy: Double?

    /// No values yet for `temperature` (a reader fills them in).
    public init(temperature: Double) { self.temperature = temperature }

    /// The values of `sums` over `n` counted rows under `options`.
    public init(_ sums: TemperatureSums, countedRows n: UInt64, options: MetricOptions) {
        temperature = sums.temperature
        guard n > 0 else { return }
        let rows = Double(n)
        let nll = sums.nllSum.value / rows
        let term = (options.mode == .uniform ? sums.uniformSum.value : sums.othersSum.value) / rows
        self.nll = nll
        loss = (1 - options.smoothing) * nll + options.smoothing * term
        meanConfidence = sums.confidenceSum.value / rows
        brier = sums.brierSum.value / rows
        entropy = sums.entropySum.value / rows
        (ece, mce) = MetricValues.calibration(counts: sums.binCounts, correct: sums.binCorrect, confidence: sums.binConfidence, rows: rows)
    }
}

/// The temperature of lowest mean nll, refined between grid points from the stored derivative sums.
public struct BestTemperature: Sendable, Equatable {
    /// T* (= 1/β*).
    public var temperature: Double
    /// Mean nll at T*, from the interpolating model.
    public var nll: Double
    /// ECE at T*, interpolated linearly in β between the bracketing grid points' ECEs (the edge's ECE when
    /// T* lies outside the grid): ECE at an off-grid T cannot be computed exactly from one pass.
    public var ece: Double
    /// False when the optimum lies outside the grid: T* is then one Newton step (in β) from the grid's edge.
    public var withinGrid: Bool

    /// The best temperature of `values` (their `nll`s and `ece`s) given the mean derivatives of nll in β, or nil
    /// when no row was counted or there is no temperature.
    public init?(_ values: [TemperatureValues], slopes: [Double], curvatures: [Double]) {
        // Grid points in increasing β (decreasing T).
        let points = values.indices.compactMap { i -> (beta: Double, f: Double, g: Double, h: Double, ece: Double)? in
            guard let f = values[i].nll, let ece = values[i].ece else { return nil }
            return (1 / values[i].temperature, f, slopes[i], curvatures[i], ece)
        }.sorted { $0.beta < $1.beta }
        guard let best = points.indices.min(by: { points[$0].f < points[$1].f }) else { return nil }
        let p = points[best]
        let neighbour = p.g < 0 ? best + 1 : best - 1
        if p.g == 0 {
            self.init(temperature: 1 / p.beta, nll: p.f, ece: p.ece, withinGrid: true)
        } else if points.indices.contains(neighbour), (points[neighbour].g > 0) == (p.g < 0) {
            let (a, b) = p.g < 0 ? (p, points[neighbour]) : (points[neighbour], p)
            let (t, nll) = BestTemperature.hermiteMinimum(h: b.beta - a.beta, f0: a.f, g0: a.g, c0: a.h, f1: b.f, g1: b.g, c1: b.h)
            let beta = a.beta + t * (b.beta - a.beta)
            self.init(temperature: 1 / beta, nll: nll, ece: a.ece + t * (b.ece - a.ece), withinGrid: true)
        } else if p.h > 0, p.beta - p.g / p.h > 0 {
            // Outside the grid (or an interval whose slopes do not change sign): one Newton step of the quadratic model.
            let beta = p.beta - p.g / p.h
            self.init(temperature: 1 / beta, nll: p.f - p.g * p.g / (2 * p.h), ece: p.ece, withinGrid: points.indices.contains(neighbour))
        } else {
            self.init(temperature: 1 / p.beta, nll: p.f, ece: p.ece, withinGrid: false)
        }
    }

    /// Creates a value.
    public init(temperature: Double, nll: Double, ece: Double, withinGrid: Bool) {
        self.temperature = temperature
        self.nll = nll
        self.ece = ece
        self.withinGrid = withinGrid
    }

    /// The minimum on [0, 1] of the quintic Hermite interpolant of f with values f, first derivatives g and second
    /// derivatives c at β = a (0) and b (1), h = b − a, when g0 < 0 < g1: (t*, p(t*)). The root of p' is bracketed
    /// by the slopes' signs and found by bisection.
    static func hermiteMinimum(h: Double, f0: Double, g0: Double, c0: Double, f1: Double, g1: Double, c1: Double) -> (Double, Double) {
        let df = f1 - f0, hg0 = h * g0, hg1 = h * g1, hc0 = h * h * c0, hc1 = h * h * c1
        let a = [f0, hg0, hc0 / 2,
                 10 * df - 6 * hg0 - 4 * hg1 - 1.5 * hc0 + 0.5 * hc1,
                 -15 * df + 8 * hg0 + 7 * hg1 + 1.5 * hc0 - hc1,
                 6 * df - 3 * hg0 - 3 * hg1 - 0.5 * hc0 + 0.5 * hc1]
        func p(_ t: Double) -> Double { a.reversed().reduce(0) { $0 * t + $1 } }
        func dp(_ t: Double) -> Double { ((((5 * a[5] * t + 4 * a[4]) * t + 3 * a[3]) * t + 2 * a[2]) * t + a[1]) }
        var lo = 0.0, hi = 1.0
        for _ in 0..<200 {
            let mid = (lo + hi) / 2
            if mid == lo || mid == hi { break }
            if dp(mid) < 0 { lo = mid } else { hi = mid }
        }
        let t = (lo + hi) / 2
        return (t, p(t))
    }
}

extension MetricValues {
    /// ECE and MCE of equal-width bins over `rows` counted rows.
    static func calibration(counts: [UInt64], correct: [UInt64], confidence: [ExactSum], rows: Double) -> (ece: Double, mce: Double) {
        var gap = 0.0, maxGap = 0.0
        for b in counts.indices where counts[b] > 0 {
            let binGap = abs(Double(correct[b]) - confidence[b].value)
            gap += binGap
            maxGap = max(maxGap, binGap / Double(counts[b]))
        }
        return (gap / rows, maxGap)
    }

    /// Fills `adaptiveECE`, `byTemperature` and `bestTemperature` from `accumulator`.
    mutating func computeStatistics(_ accumulator: MetricAccumulator, options: MetricOptions) {
        adaptiveECE = accumulator.countedRows > 0 ? accumulator.confidenceHistogram?.adaptiveECE(bins: accumulator.eceBins) : nil
        byTemperature = accumulator.temperatureSums.map { TemperatureValues($0, countedRows: accumulator.countedRows, options: options) }
        guard !byTemperature.isEmpty, accumulator.countedRows > 0 else { return }
        let n = Double(accumulator.countedRows)
        bestTemperature = BestTemperature(byTemperature, slopes: accumulator.temperatureSums.map { $0.slopeSum.value / n },
                                          curvatures: accumulator.temperatureSums.map { $0.curvatureSum.value / n })
    }
}
