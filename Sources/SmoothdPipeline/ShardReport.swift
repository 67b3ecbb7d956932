import LSHDFormat
import SmoothdJSON
import SmoothdMetrics

/// The JSON documents smoothd writes: one entry per shard and a total.
public enum ShardReport {
    /// `losses_by_smoothing` keys: the shortest decimal of ε (`0.1`, `0.0`, `0.3`).
    public static func smoothingKey(_ e: Double) -> String { e.description }

    /// The settings echoed in every entry.
    static func settings(_ options: MetricOptions) -> [(String, JSONValue)] {
        [("smoothing", .double(options.smoothing)), ("smoothing_mode", .string(options.mode.rawValue)),
         ("top_k", .int(Int64(options.topK))), ("ece_bins", .int(Int64(options.eceBins)))]
    }

    /// Counts and metric values of an accumulator, in report order.
    public static func metricFields(_ accumulator: MetricAccumulator, options: MetricOptions) -> [(String, JSONValue)] {
        let values = MetricValues(accumulator, options: options)
        return [
            ("rows", .int(Int64(accumulator.rows))),
            ("counted_rows", .int(Int64(accumulator.countedRows))),
            ("ignored_rows", .int(Int64(accumulator.ignoredRows))),
            ("nonfinite_rows", .int(Int64(accumulator.nonfiniteRows))),
            ("loss", .number(values.loss)),
            ("nll", .number(values.nll)),
            ("perplexity", .number(values.perplexity)),
            ("accuracy", .number(values.accuracy)),
            ("top_k_accuracy", .number(values.topKAccuracy)),
            ("mean_confidence", .number(values.meanConfidence)),
            ("entropy", .number(values.entropy)),
            ("brier", .number(values.brier)),
            ("ece", .number(values.ece)),
            ("losses_by_smoothing", .object(values.lossesBySmoothing.map { (smoothingKey($0.smoothing), .number($0.loss)) })),
        ]
    }

    /// The entry for a valid shard: its header facts, the settings, counts, metrics and metadata.
    public static func entry(_ summary: ShardSummary, options: MetricOptions) -> JSONValue {
        var members: [(String, JSONValue)] = [
            ("shard", .string(summary.shard)), ("ok", .bool(true)),
            ("num_classes", .int(Int64(summary.header.numClasses))),
            ("logit_dtype", .string(summary.header.logitDType.name)),
            ("label_dtype", .string(summary.header.labelDType.name)),
            ("ignore_index", .int(summary.header.ignoreIndex)),
        ]
        members += settings(options)
        members += metricFields(summary.accumulator, options: options)
        members += [
            ("meta", summary.header.meta ?? .null),
            ("compressed_bytes", .int(Int64(summary.compressedBytes))),
            ("payload_bytes", .int(Int64(summary.payloadBytes))),
            ("frames", .int(Int64(summary.frames))),
            ("seconds", .double(summary.seconds)),
        ]
        return .object(members)
    }

    /// The entry for an invalid shard: `ok: false` and the error, no metrics.
    public static func entry(_ failure: ShardFailure) -> JSONValue {
        .object([
            ("shard", .string(failure.shard)), ("ok", .bool(false)),
            ("error", .object([
                ("kind", .string(failure.kind.name)),
                ("offset", failure.offset.map { .int(Int64($0)) } ?? .null),
                ("reason", .string(failure.reason)),
            ])),
        ])
    }

    /// The entry for either outcome.
    public static func entry(_ outcome: ShardOutcome, options: MetricOptions) -> JSONValue {
        switch outcome {
        case .success(let summary): return entry(summary, options: options)
        case .failure(let failure): return entry(failure)
        }
    }

    /// The total over the valid shards.
    public static func total(accumulator: MetricAccumulator, shardsOK: Int, shardsFailed: Int, options: MetricOptions) -> JSONValue {
        .object([("shards_ok", .int(Int64(shardsOK))), ("shards_failed", .int(Int64(shardsFailed)))]
            + settings(options) + metricFields(accumulator, options: options))
    }
}

extension ShardSummary {
    /// This shard's report entry (see `ShardReport.entry`).
    public func entry(options: MetricOptions) -> JSONValue { ShardReport.entry(self, options: options) }
}

extension ShardFailure {
    /// This shard's report entry (see `ShardReport.entry`).
    public func entry() -> JSONValue { ShardReport.entry(self) }
}
