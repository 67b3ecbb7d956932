/// How the smoothing mass ε is spread over the classes.
public enum SmoothingMode: String, Sendable, CaseIterable {
    /// PyTorch `cross_entropy(label_smoothing=ε)`: gold 1−ε+ε/K, every class ε/K.
    case uniform
    /// fairseq: gold 1−ε, each wrong class ε/(K−1).
    case others

    /// Every name a mode is given by: the canonical ones and the aliases `pytorch` and `fairseq`.
    public static let names = ["uniform", "pytorch", "others", "fairseq"]

    /// The mode named `name`: `uniform` or `pytorch`, `others` or `fairseq`.
    public init?(name: String) {
        switch name {
        case "uniform", "pytorch": self = .uniform
        case "others", "fairseq": self = .others
        default: return nil
        }
    }
}

/// What to compute for each shard.
public struct MetricOptions: Sendable, Equatable {
    /// ε for the reported `loss`.
    public var smoothing: Double
    /// How ε is spread.
    public var mode: SmoothingMode
    /// Further ε values whose loss is reported from the same pass.
    public var reportSmoothing: [Double]
    /// k for top-k accuracy.
    public var topK: Int
    /// Number of equal-width confidence bins for ECE.
    public var eceBins: Int
    /// Temperatures T of the sweep (`by_temperature`, `best_temperature`); empty: no sweep.
    public var temperatures: [Double]
    /// R, the Poisson-bootstrap replicates kept for intervals; 0 (the default) keeps none.
    public var bootstrapReplicates: Int

    /// Creates options; the defaults are ε = 0.1 (uniform), top-5, 15 ECE bins, no temperature sweep and no bootstrap.
    public init(smoothing: Double = 0.1, mode: SmoothingMode = .uniform, reportSmoothing: [Double] = [], topK: Int = 5, eceBins: Int = 15,
                temperatures: [Double] = [], bootstrapReplicates: Int = 0) {
        self.smoothing = smoothing
        self.mode = mode
        self.reportSmoothing = reportSmoothing
        self.topK = topK
        self.eceBins = eceBins
        self.temperatures = temperatures
        self.bootstrapReplicates = bootstrapReplicates
    }

    /// The ε values reported in `losses_by_smoothing`: the main one first, then the extra ones, without repeats.
    public var allSmoothingValues: [Double] {
        var values = [smoothing]
        for e in reportSmoothing where !values.contains(e) { values.append(e) }
        return values
    }

    /// The temperatures swept, in the order given, without repeats.
    public var allTemperatures: [Double] {
        var values: [Double] = []
        for t in temperatures where !values.contains(t) { values.append(t) }
        return values
    }

    /// Problems with these options, phrased for a command line; empty when they are usable.
    public var problems: [String] {
        var found: [String] = []
        for e in allSmoothingValues where !(e >= 0 && e <= 1) {
            found.append("smoothing \(e) is outside [0, 1]")
        }
        if topK < 1 { found.append("top-k must be at least 1 (got \(topK))") }
        for t in temperatures where !(t > 0 && t.isFinite) { found.append("temperature \(t) is not a finite number > 0") }
        if !(1...10_000).contains(eceBins) { found.append("ece-bins must be in [1, 10000] (got \(eceBins))") }
        found += bootstrapProblems
        return found
    }
}
