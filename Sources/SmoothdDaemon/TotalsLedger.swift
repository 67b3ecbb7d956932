import SmoothdMetrics
import SmoothdPipeline

/// A summary whose accumulator cannot be merged into the totals (computed with other `--top-k` / `--ece-bins`).
public struct TotalsMismatchError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The summary file.
    public var file: String
    /// What differs.
    public var detail: String
    /// A readable message.
    public var description: String {
        "\(file): \(detail); totals can only merge summaries computed with the same top-k and ece-bins (use the original options or a new output directory)"
    }
}

/// The running totals: the exact merge of every summary and the count of every error record in the output
/// directory. Merging is exact and order-independent, so the ledger built shard by shard equals the ledger
/// rebuilt from the files at start.
public struct TotalsLedger: Sendable, Equatable {
    /// The merge of all successful shards' accumulators.
    public private(set) var accumulator: MetricAccumulator
    /// Number of summaries merged.
    public private(set) var shardsOK = 0
    /// Number of error records counted.
    public private(set) var shardsFailed = 0
    /// The earliest processing time (ISO 8601, UTC), if any shard was recorded.
    public private(set) var firstTime: String?
    /// The latest processing time (ISO 8601, UTC), if any shard was recorded.
    public private(set) var lastTime: String?

    /// An empty ledger for `options` (its top-k and ECE bins).
    public init(options: MetricOptions) {
        accumulator = MetricAccumulator(options: options)
    }

    /// Merges one successful shard processed at `time`.
    public mutating func addSuccess(_ other: MetricAccumulator, time: String, file: String = "") throws(TotalsMismatchError) {
        guard other.topK == accumulator.topK, other.eceBins == accumulator.eceBins else {
            throw TotalsMismatchError(
                file: file,
                detail: "top-k \(other.topK) / ece-bins \(other.eceBins), expected \(accumulator.topK) / \(accumulator.eceBins)")
        }
        accumulator.merge(other)
        shardsOK += 1
        note(time)
    }

    /// Counts one failed shard recorded at `time`.
    public mutating func addFailure(time: String) {
        shardsFailed += 1
        note(time)
    }

    private mutating func note(_ time: String) {
        // Fixed-width UTC timestamps sort chronologically as strings.
        if firstTime.map({ time < $0 }) ?? true { firstTime = time }
        if lastTime.map({ time > $0 }) ?? true { lastTime = time }
    }

    /// The `totals.json` record: the `eval --json` total for these shards and the first and last record times.
    func record(options: MetricOptions) -> TotalsRecord {
        TotalsRecord(
            total: TotalReport(accumulator: accumulator, shardsOK: shardsOK, shardsFailed: shardsFailed, options: options),
            firstProcessedAt: firstTime, lastProcessedAt: lastTime)
    }

    /// The headline values for the Prometheus gauges.
    public func headline(options: MetricOptions) -> MetricValues {
        MetricValues(accumulator, options: options)
    }
}
