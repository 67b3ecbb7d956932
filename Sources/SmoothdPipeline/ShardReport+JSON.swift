import LSHDFormat
import SmoothdJSON
import SmoothdMetrics

/// A report value written as one JSON object. Every report type is encoded here, in one place, so
/// key names and their order (which JSON readers and the fixtures depend on) are defined once.
public protocol JSONObjectEncodable {
    /// The object's members in report order.
    var jsonMembers: [(String, JSONValue)] { get }
}

extension JSONObjectEncodable {
    /// The JSON object.
    public var json: JSONValue { .object(jsonMembers) }
}

/// Key helpers shared by the report encoders.
public enum ShardReport {
    /// `losses_by_smoothing` keys: the shortest decimal of ε (`0.1`, `0.0`, `0.3`).
    public static func smoothingKey(_ e: Double) -> String { e.description }
}

extension ReportSettings: JSONObjectEncodable {
    /// `smoothing`, `smoothing_mode`, `top_k`, `ece_bins`, and `temperatures` when there is a sweep.
    public var jsonMembers: [(String, JSONValue)] {
        [("smoothing", .double(smoothing)), ("smoothing_mode", .string(mode.rawValue)),
         ("top_k", .int(Int64(topK))), ("ece_bins", .int(Int64(eceBins)))]
            + (temperatures.isEmpty ? [] : [("temperatures", .array(temperatures.map { .double($0) }))])
    }
}

extension ReliabilityBin: JSONObjectEncodable {
    /// `lower`, `upper`, `count`, `accuracy`, `mean_confidence` (the last two null for an empty bin).
    public var jsonMembers: [(String, JSONValue)] {
        [("lower", .double(lower)), ("upper", .double(upper)), ("count", .int(Int64(count))),
         ("accuracy", .number(accuracy)), ("mean_confidence", .number(meanConfidence))]
    }
}

extension MetricReport: JSONObjectEncodable {
    /// The counts, then the metric values (null when no row was counted).
    public var jsonMembers: [(String, JSONValue)] {
        [
            ("rows", .int(Int64(rows))),
            ("counted_rows", .int(Int64(countedRows))),
            ("ignored_rows", .int(Int64(ignoredRows))),
            ("nonfinite_rows", .int(Int64(nonfiniteRows))),
            ("loss", .number(values.loss)),
            ("nll", .number(values.nll)),
            ("perplexity", .number(values.perplexity)),
            ("accuracy", .number(values.accuracy)),
            ("top_k_accuracy", .number(values.topKAccuracy)),
            ("mean_confidence", .number(values.meanConfidence)),
            ("entropy", .number(values.entropy)),
            ("brier", .number(values.brier)),
            ("ece", .number(values.ece)),
            ("mce", .number(values.mce)),
        ] + values.adaptiveMembers + [
            ("losses_by_smoothing", .object(values.lossesBySmoothing.map { (ShardReport.smoothingKey($0.smoothing), .number($0.loss)) })),
        ] + (intervals.map { [("intervals", $0.json)] } ?? []) + [
            ("reliability", .array(values.reliability.map(\.json))),
        ] + values.temperatureMembers
    }
}

extension ShardEntry: JSONObjectEncodable {
    /// Header facts, the settings, counts, metrics, metadata and sizes.
    public var jsonMembers: [(String, JSONValue)] {
        let header = summary.header
        return [
            ("shard", .string(summary.shard)), ("ok", .bool(true)),
            ("num_classes", .int(Int64(header.numClasses))),
            ("logit_dtype", .string(header.logitDType.name)),
            ("label_dtype", .string(header.labelDType.name)),
            ("ignore_index", .int(header.ignoreIndex)),
        ] + settings.jsonMembers + metrics.jsonMembers + [
            ("meta", header.meta ?? .null),
            ("compressed_bytes", .int(Int64(summary.compressedBytes))),
            ("payload_bytes", .int(Int64(summary.payloadBytes))),
            ("frames", .int(Int64(summary.frames))),
            ("labels_digest", summary.labelsDigest.json),
            ("seconds", .double(summary.seconds)),
        ]
    }
}

extension ShardFailure: JSONObjectEncodable {
    /// `ok: false` and the error (`kind`, `offset`, `reason`), no metrics.
    public var jsonMembers: [(String, JSONValue)] {
        [
            ("shard", .string(shard)), ("ok", .bool(false)),
            ("error", .object([
                ("kind", .string(kind.name)),
                ("offset", offset.map { .int(Int64($0)) } ?? .null),
                ("reason", .string(reason)),
            ])),
        ]
    }
}

extension ReportEntry: JSONObjectEncodable {
    /// The valid or invalid entry.
    public var jsonMembers: [(String, JSONValue)] {
        switch self {
        case .valid(let entry): return entry.jsonMembers
        case .invalid(let failure): return failure.jsonMembers
        }
    }
}

extension TotalReport: JSONObjectEncodable {
    /// Shard counts, the settings, counts and metrics, then the exact `state`.
    public var jsonMembers: [(String, JSONValue)] {
        [("shards_ok", .int(Int64(shardsOK))), ("shards_failed", .int(Int64(shardsFailed)))] + settings.jsonMembers + metrics.jsonMembers
            + [("state", state.jsonState())]
    }
}
