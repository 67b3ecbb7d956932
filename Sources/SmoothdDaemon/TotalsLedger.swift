import SmoothdMetrics
import SmoothdPipeline
import SmoothdRuns

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

/// The running totals: the live summaries in the output directory, in groups (the exact merge of each group's
/// current summaries, by the rules of `SmoothdRuns`), and the count of every error record. Merging is exact and
/// order-independent, so the ledger built shard by shard equals the ledger rebuilt from the files at start, and
/// each group equals `eval` over the same shards.
public struct TotalsLedger: Sendable {
    /// The live shards by group (a re-run replaces the shard of its identity).
    public private(set) var runs: LiveRuns
    /// Number of error records counted.
    public private(set) var shardsFailed = 0
    /// The earliest time of a counted record (ISO 8601, UTC), if any.
    public private(set) var firstTime: String?
    /// The latest time of a counted record (ISO 8601, UTC), if any.
    public private(set) var lastTime: String?
    private let options: MetricOptions
    /// The times of the live summaries, by record name (a superseded one's time no longer counts).
    private var summaryTimes: [String: String] = [:]
    /// The earliest and latest error record times.
    private var failureTimes: (first: String, last: String)?

    /// An empty ledger for `options` (its top-k and ECE bins) grouping by `groupBy`.
    public init(options: MetricOptions, groupBy: GroupBy = .standard) {
        self.options = options
        runs = LiveRuns(groupBy: groupBy, options: options)
    }

    /// The merge of every live summary.
    public var accumulator: MetricAccumulator { runs.total }

    /// Number of live summaries.
    public var shardsOK: Int { runs.count }

    /// Merges the summary `name` (its record instance) placed at `placement`, processed at `time`; returns the live
    /// shard of the same identity it replaces, if any (its state is read back with `stateOf(name)` and taken out).
    @discardableResult
    public mutating func addSuccess(
        _ other: MetricAccumulator, name: String, placement: ShardPlacement, time: String, file: String = "",
        stateOf: (String) -> MetricAccumulator?
    ) throws(TotalsMismatchError) -> LiveRuns.Departure {
        try TotalsLedger.check(other, options: options, file: file)
        note(time)
        summaryTimes[name] = time
        let departure = runs.record(name, placement: placement, accumulator: other, time: WallClock.seconds(iso8601: time) ?? 0, stateOf: stateOf)
        let gone = (departure.superseded.map { [$0.name] } ?? []) + departure.uncounted
        let times = gone.compactMap { summaryTimes.removeValue(forKey: $0) }
        if times.contains(where: { $0 == firstTime || $0 == lastTime }) {
            // Rare (a re-run of the first record): the bounds are found again over the records still counted.
            let times = Array(summaryTimes.values) + (failureTimes.map { [$0.first, $0.last] } ?? [])
            firstTime = times.min()
            lastTime = times.max()
        }
        return departure
    }

    /// Throws unless `other` was computed with the top-k, bins, temperatures and bootstrap of `options` (`file` names it).
    public static func check(_ other: MetricAccumulator, options: MetricOptions, file: String) throws(TotalsMismatchError) {
        guard other.topK == options.topK, other.eceBins == options.eceBins, other.temperatures == options.allTemperatures,
              other.bootstrapReplicates == options.bootstrapReplicates else {
            func sweep(_ t: [Double]) -> String { t.isEmpty ? "none" : t.map(\.description).joined(separator: ",") }
            throw TotalsMismatchError(
                file: file,
                detail: "top-k \(other.topK) / ece-bins \(other.eceBins) / temperatures \(sweep(other.temperatures)) / bootstrap \(other.bootstrapReplicates), "
                    + "expected \(options.topK) / \(options.eceBins) / \(sweep(options.allTemperatures)) / \(options.bootstrapReplicates)")
        }
    }

    /// Counts, at start, the live summaries `shards` (arrival order, distinct identities, checked with
    /// ``check(_:options:file:)``) whose states are merged by group in `sums` (see ``LiveRuns/recordCounted(_:sums:)``).
    mutating func addCounted(_ shards: some Collection<(name: String, placement: ShardPlacement, check: StateCheck, time: String)>,
                             sums: [RunKey: StateSum]) {
        summaryTimes.reserveCapacity(shards.count)
        for shard in shards {
            note(shard.time)
            summaryTimes[shard.name] = shard.time
        }
        runs.recordCounted(shards.lazy.map { (name: $0.name, placement: $0.placement, check: $0.check, time: WallClock.seconds(iso8601: $0.time) ?? 0) },
                           sums: sums)
    }

    /// Counts one failed shard recorded at `time`.
    public mutating func addFailure(time: String) {
        shardsFailed += 1
        failureTimes = failureTimes.map { (min($0.first, time), max($0.last, time)) } ?? (time, time)
        note(time)
    }

    private mutating func note(_ time: String) {
        // Fixed-width UTC timestamps sort chronologically as strings.
        if firstTime.map({ time < $0 }) ?? true { firstTime = time }
        if lastTime.map({ time > $0 }) ?? true { lastTime = time }
    }

    /// The `totals.json` record: the `eval --json` total and groups for these shards, and the first and last record times.
    func record(options: MetricOptions) -> TotalsRecord {
        TotalsRecord(
            total: TotalReport(accumulator: accumulator, shardsOK: shardsOK, shardsFailed: shardsFailed, options: options),
            groups: runs.groups().groups.map { GroupReport($0.group, options: options) },
            firstProcessedAt: firstTime, lastProcessedAt: lastTime)
    }

    /// The headline values for the Prometheus gauges.
    public func headline(options: MetricOptions) -> MetricValues {
        MetricValues(accumulator, options: options)
    }
}
