import LSHDFormat
import SmoothdJSON
import SmoothdMetrics

/// The settings echoed in every report entry.
public struct ReportSettings: Sendable, Equatable {
    /// ε of `loss`.
    public var smoothing: Double
    /// How ε is spread over the classes.
    public var mode: SmoothingMode
    /// k of `top_k_accuracy`.
    public var topK: Int
    /// Bins of `ece`.
    public var eceBins: Int
    /// Temperatures of `by_temperature` (empty without a sweep).
    public var temperatures: [Double]

    /// The settings of `options`.
    public init(_ options: MetricOptions) {
        smoothing = options.smoothing
        mode = options.mode
        topK = options.topK
        eceBins = options.eceBins
        temperatures = options.allTemperatures
    }
}

/// Counts and metric values of one accumulator (a shard or a total), as reports show them.
public struct MetricReport: Sendable {
    /// Rows read.
    public var rows: UInt64
    /// Rows counted in the metrics.
    public var countedRows: UInt64
    /// Rows whose label is `ignore_index`.
    public var ignoredRows: UInt64
    /// Rows left out because a logit is not finite.
    public var nonfiniteRows: UInt64
    /// The metric values (nil when no row was counted).
    public var values: MetricValues
    /// The 95 % bootstrap intervals, when the state keeps replicates (`--bootstrap R`).
    public var intervals: MetricIntervals?

    /// The report of `accumulator` under `options`.
    public init(_ accumulator: MetricAccumulator, options: MetricOptions) {
        rows = accumulator.rows
        countedRows = accumulator.countedRows
        ignoredRows = accumulator.ignoredRows
        nonfiniteRows = accumulator.nonfiniteRows
        values = MetricValues(accumulator, options: options)
        intervals = accumulator.bootstrap.map { MetricIntervals($0, options: options) }
    }
}

/// The report entry of a valid shard.
public struct ShardEntry: Sendable {
    /// The shard's evaluation.
    public var summary: ShardSummary
    /// The settings it was evaluated with.
    public var settings: ReportSettings
    /// Its counts and metrics.
    public var metrics: MetricReport

    /// The entry of `summary` evaluated under `options`.
    public init(_ summary: ShardSummary, options: MetricOptions) {
        self.summary = summary
        settings = ReportSettings(options)
        metrics = MetricReport(summary.accumulator, options: options)
    }
}

/// One shard's report entry: its metrics, or why it is invalid.
public enum ReportEntry: Sendable {
    /// Valid.
    case valid(ShardEntry)
    /// Invalid or unreadable.
    case invalid(ShardFailure)

    /// The entry of `outcome` evaluated under `options`.
    public init(_ outcome: ShardOutcome, options: MetricOptions) {
        switch outcome {
        case .success(let summary): self = .valid(ShardEntry(summary, options: options))
        case .failure(let failure): self = .invalid(failure)
        }
    }
}

/// The total over the valid shards of a set.
public struct TotalReport: Sendable {
    /// Valid shards.
    public var shardsOK: Int
    /// Invalid shards.
    public var shardsFailed: Int
    /// The settings.
    public var settings: ReportSettings
    /// Counts and metrics of the valid shards together.
    public var metrics: MetricReport
    /// Their exact merged state (docs/STATE-FORMAT.md).
    public var state: MetricAccumulator

    /// The total of `accumulator`, the merged state of `shardsOK` valid shards.
    public init(accumulator: MetricAccumulator, shardsOK: Int, shardsFailed: Int, options: MetricOptions) {
        self.shardsOK = shardsOK
        self.shardsFailed = shardsFailed
        settings = ReportSettings(options)
        metrics = MetricReport(accumulator, options: options)
        state = accumulator
    }
}
