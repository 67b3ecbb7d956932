import SmoothdJSON
import SmoothdMetrics

/// Everything one HTML report shows, read from the document it embeds: `{"inputs": [...], "groups": [...],
/// "total": {...}}` as `smoothd merge --json` prints it (groups and total in the `eval --json` schema; an input is
/// a path or an object with `path`). Reading the drawn values from that one document keeps the page and its
/// embedded data from disagreeing.
public struct ReportDocument: Sendable {
    /// The metric options the numbers were computed with.
    public struct Settings: Sendable {
        /// ε of `loss`.
        public var smoothing: Double
        /// `uniform` or `others`.
        public var mode: String
        /// k of the top-k accuracy.
        public var topK: Int64
        /// Confidence bins of ECE, MCE and the reliability diagram.
        public var eceBins: Int64
    }

    /// One confidence bin of a reliability diagram.
    public struct Bin: Sendable {
        /// Lower confidence edge.
        public var lower: Double
        /// Upper confidence edge.
        public var upper: Double
        /// Counted rows in the bin.
        public var count: Int64
        /// Fraction correct; nil for an empty bin.
        public var accuracy: Double?
        /// Mean max-probability; nil for an empty bin.
        public var meanConfidence: Double?
    }

    /// Counts and metric values of a group or the total (nil values: no row counted).
    public struct Metrics: Sendable {
        /// Rows read.
        public var rows: Int64
        /// Rows counted in the metrics.
        public var countedRows: Int64
        /// Rows with the ignore label.
        public var ignoredRows: Int64
        /// Rows left out for a non-finite logit.
        public var nonfiniteRows: Int64
        /// Smoothed loss at the report's ε (nats).
        public var loss: Double?
        /// Negative log-likelihood (nats).
        public var nll: Double?
        /// exp(nll).
        public var perplexity: Double?
        /// Top-1 accuracy.
        public var accuracy: Double?
        /// Top-k accuracy.
        public var topKAccuracy: Double?
        /// Mean max-probability.
        public var meanConfidence: Double?
        /// Mean entropy (nats).
        public var entropy: Double?
        /// Mean Brier score.
        public var brier: Double?
        /// Expected calibration error.
        public var ece: Double?
        /// Maximum calibration error.
        public var mce: Double?
        /// The loss at each reported ε, keyed by ε's decimal text.
        public var lossesBySmoothing: [(smoothing: String, loss: Double?)]
        /// The reliability bins, lowest confidence first.
        public var bins: [Bin]
        /// Adaptive (equal-mass) ECE; nil when absent (older documents) or null.
        public var adaptiveECE: Double? = nil
        /// The temperature sweep, in the document's order (empty without one).
        public var byTemperature: [TemperatureValues] = []
        /// The best temperature, when the document has one.
        public var bestTemperature: BestTemperatureRow? = nil
    }

    /// Ranks expected and present in a group whose shards state `num_shards`.
    public struct Completeness: Sendable {
        /// Ranks expected.
        public var expected: Int64
        /// Ranks present.
        public var present: Int64
        /// The missing ranks, as text (an index, or a run and an index).
        public var missing: [String]
    }

    /// One group of shards.
    public struct Group: Sendable {
        /// The group key's members in `--group-by` order.
        public var key: [(String, JSONValue)]
        /// Live shards in the group.
        public var shards: Int64
        /// The numeric meta `step` its shards state, which orders checkpoints in trends.
        public var step: Double?
        /// Completeness, when its shards state `num_shards`.
        public var completeness: Completeness?
        /// Its counts and metrics.
        public var metrics: Metrics
    }

    /// A shard that was not counted (or an input that could not be read).
    public struct InvalidShard: Sendable {
        /// Its path.
        public var shard: String
        /// The error kind (e.g. `label_out_of_range`).
        public var kind: String
        /// Payload offset where the error was found, when known.
        public var offset: Int64?
        /// Why.
        public var reason: String

        /// An invalid shard.
        public init(shard: String, kind: String, offset: Int64?, reason: String) {
            self.shard = shard
            self.kind = kind
            self.offset = offset
            self.reason = reason
        }
    }

    /// What was evaluated: input paths or a daemon's output directory.
    public var inputs: [String]
    /// When the report was made (ISO 8601, UTC).
    public var generatedAt: String
    /// The metric options.
    public var settings: Settings
    /// Valid shards counted in the total.
    public var shardsOK: Int64
    /// Shards not counted.
    public var shardsFailed: Int64
    /// The total over every group.
    public var total: Metrics
    /// The groups, in the document's order.
    public var groups: [Group]
    /// The invalid shards.
    public var invalid: [InvalidShard]
    /// Lines shown under the header (e.g. that a live page shows only the most recent groups).
    public var notes: [String]
    /// The document the report was read from, embedded in the page.
    public var data: JSONValue

    /// Reads `document` (see the type's description). `steps` maps a group key's compact JSON text to its numeric
    /// meta `step` (groups not in it have none); `invalid` lists the shards not counted.
    public init(document: JSONValue, steps: [String: Double] = [:], invalid: [InvalidShard] = [], generatedAt: String,
                notes: [String] = []) throws(ReportInputError) {
        let reader = Reader()
        guard let total = document["total"] else { throw ReportInputError("the document has no total") }
        inputs = (document["inputs"]?.arrayValue ?? []).compactMap { $0.stringValue ?? $0["path"]?.stringValue }
        self.invalid = invalid
        self.generatedAt = generatedAt
        self.notes = notes
        data = document
        settings = Settings(smoothing: try reader.number(total, "smoothing", in: "total"),
                            mode: try reader.string(total, "smoothing_mode", in: "total"),
                            topK: try reader.count(total, "top_k", in: "total"),
                            eceBins: try reader.count(total, "ece_bins", in: "total"))
        shardsOK = try reader.count(total, "shards_ok", in: "total")
        shardsFailed = try reader.count(total, "shards_failed", in: "total")
        self.total = try reader.metrics(total, in: "total")
        guard let groupValues = (document["groups"] ?? .array([])).arrayValue else { throw ReportInputError("groups is not an array") }
        groups = []
        for (i, value) in groupValues.enumerated() {
            let place = "groups[\(i)]"
            guard let key = value["key"]?.objectMembers else { throw ReportInputError("\(place).key is not an object") }
            groups.append(Group(key: key, shards: try reader.count(value, "shards", in: place), step: steps[JSONValue.object(key).serialized()],
                                completeness: try value["completeness"].map { c throws(ReportInputError) in try reader.completeness(c, in: place) },
                                metrics: try reader.metrics(value, in: place)))
        }
    }
}

/// A report document that is not in the expected shape: which member, and why.
public struct ReportInputError: Error, Sendable, CustomStringConvertible {
    /// What is wrong, naming the member.
    public var description: String

    /// An error saying `description`.
    public init(_ description: String) { self.description = description }
}

/// Typed reads of the document's members, each failure naming the member.
private struct Reader {
    func number(_ object: JSONValue, _ key: String, in place: String) throws(ReportInputError) -> Double {
        guard let v = object[key]?.doubleValue else { throw ReportInputError("\(place).\(key) is missing or not a number") }
        return v
    }

    /// A number, or nil for `null` (a metric of a group with no counted row).
    func optional(_ object: JSONValue, _ key: String, in place: String) throws(ReportInputError) -> Double? {
        guard let v = object[key] else { throw ReportInputError("\(place).\(key) is missing") }
        if v == .null { return nil }
        guard let d = v.doubleValue else { throw ReportInputError("\(place).\(key) is not a number") }
        return d
    }

    func count(_ object: JSONValue, _ key: String, in place: String) throws(ReportInputError) -> Int64 {
        guard let v = object[key]?.intValue, v >= 0 else { throw ReportInputError("\(place).\(key) is missing or not a count") }
        return v
    }

    func string(_ object: JSONValue, _ key: String, in place: String) throws(ReportInputError) -> String {
        guard let v = object[key]?.stringValue else { throw ReportInputError("\(place).\(key) is missing or not a string") }
        return v
    }

    func metrics(_ o: JSONValue, in place: String) throws(ReportInputError) -> ReportDocument.Metrics {
        guard let losses = o["losses_by_smoothing"]?.objectMembers else { throw ReportInputError("\(place).losses_by_smoothing is not an object") }
        guard let binValues = o["reliability"]?.arrayValue else { throw ReportInputError("\(place).reliability is not an array") }
        var bins: [ReportDocument.Bin] = []
        for (b, bin) in binValues.enumerated() {
            let where_ = "\(place).reliability[\(b)]"
            bins.append(ReportDocument.Bin(lower: try number(bin, "lower", in: where_), upper: try number(bin, "upper", in: where_),
                                           count: try count(bin, "count", in: where_), accuracy: try optional(bin, "accuracy", in: where_),
                                           meanConfidence: try optional(bin, "mean_confidence", in: where_)))
        }
        return ReportDocument.Metrics(
            rows: try count(o, "rows", in: place), countedRows: try count(o, "counted_rows", in: place),
            ignoredRows: try count(o, "ignored_rows", in: place), nonfiniteRows: try count(o, "nonfinite_rows", in: place),
            loss: try optional(o, "loss", in: place), nll: try optional(o, "nll", in: place), perplexity: try optional(o, "perplexity", in: place),
            accuracy: try optional(o, "accuracy", in: place), topKAccuracy: try optional(o, "top_k_accuracy", in: place),
            meanConfidence: try optional(o, "mean_confidence", in: place), entropy: try optional(o, "entropy", in: place),
            brier: try optional(o, "brier", in: place), ece: try optional(o, "ece", in: place), mce: try optional(o, "mce", in: place),
            lossesBySmoothing: losses.map { ($0.0, $0.1.doubleValue) }, bins: bins,
            adaptiveECE: o["adaptive_ece"]?.doubleValue, byTemperature: try ReportDocument.temperatureRows(o, in: place),
            bestTemperature: try ReportDocument.bestTemperature(o, in: place))
    }

    func completeness(_ c: JSONValue, in place: String) throws(ReportInputError) -> ReportDocument.Completeness {
        let missing = (c["missing"]?.arrayValue ?? []).map { m -> String in
            if let i = m.intValue { return String(i) }
            let index = m["shard_index"]?.intValue.map(String.init) ?? "?"
            return "\(m["run"]?.serialized() ?? "?") #\(index)"
        }
        return ReportDocument.Completeness(expected: try count(c, "expected", in: "\(place).completeness"),
                                           present: try count(c, "present", in: "\(place).completeness"), missing: missing)
    }
}
