import SmoothdJSON
import SmoothdMetrics
import SmoothdPipeline
import SmoothdResults

/// Everything one HTML report shows, read from the document it embeds: `{"inputs": [...], "groups": [...],
/// "total": {...}}` as `smoothd merge --json` prints it (groups and total in the `eval --json` schema; an input is
/// a path or an object with `path`). The drawn numbers are computed from each group's and the total's exact
/// `state` with the total's options, as eval, merge and serve compute them, so the page, its embedded data and
/// every other output agree, and a metric added to `MetricValues` reaches the page without a reader of its own.
public struct ReportDocument: Sendable {
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
        /// Its counts and metrics, computed from its exact `state`.
        public var metrics: MetricReport
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
    /// The metric options the numbers were computed with (ε, mode, the extra ε values, top-k, bins).
    public var settings: MetricOptions
    /// Valid shards counted in the total.
    public var shardsOK: Int64
    /// Shards not counted.
    public var shardsFailed: Int64
    /// The total over every group.
    public var total: MetricReport
    /// The groups, in the document's order.
    public var groups: [Group]
    /// The invalid shards.
    public var invalid: [InvalidShard]
    /// Lines shown under the header (e.g. that a live page shows only the most recent groups).
    public var notes: [String]
    /// The document the report was read from, embedded in the page.
    public var data: JSONValue
    /// The comparison asked for (`report --compare-a … --compare-b …`).
    public var comparison: Comparison?

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
        settings = try reader.options(total)
        shardsOK = try reader.count(total, "shards_ok", in: "total")
        shardsFailed = try reader.count(total, "shards_failed", in: "total")
        self.total = try reader.metrics(total, options: settings, in: "total")
        guard let groupValues = (document["groups"] ?? .array([])).arrayValue else { throw ReportInputError("groups is not an array") }
        groups = []
        for (i, value) in groupValues.enumerated() {
            let place = "groups[\(i)]"
            guard let key = value["key"]?.objectMembers else { throw ReportInputError("\(place).key is not an object") }
            groups.append(Group(key: key, shards: try reader.count(value, "shards", in: place), step: steps[JSONValue.object(key).serialized()],
                                completeness: try value["completeness"].map { c throws(ReportInputError) in try reader.completeness(c, in: place) },
                                metrics: try reader.metrics(value, options: settings, in: place)))
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

    /// The options the total echoes; the extra ε values are the keys of its `losses_by_smoothing` after the first.
    func options(_ total: JSONValue) throws(ReportInputError) -> MetricOptions {
        let modeName = try string(total, "smoothing_mode", in: "total")
        guard let mode = SmoothingMode(name: modeName) else { throw ReportInputError("total.smoothing_mode \(modeName) is not uniform or others") }
        guard let losses = total["losses_by_smoothing"]?.objectMembers else { throw ReportInputError("total.losses_by_smoothing is not an object") }
        var extra: [Double] = []
        for (key, _) in losses.dropFirst() {
            guard let e = Double(key) else { throw ReportInputError("total.losses_by_smoothing: key \(key) is not a number") }
            extra.append(e)
        }
        var temperatures: [Double] = []
        if let sweep = total["by_temperature"] {
            guard let members = sweep.objectMembers else { throw ReportInputError("total.by_temperature is not an object") }
            for (key, _) in members {
                guard let t = Double(key), t > 0, t.isFinite else { throw ReportInputError("total.by_temperature: key '\(key)' is not a temperature") }
                temperatures.append(t)
            }
        }
        return MetricOptions(smoothing: try number(total, "smoothing", in: "total"), mode: mode, reportSmoothing: extra,
                             topK: Int(try count(total, "top_k", in: "total")), eceBins: Int(try count(total, "ece_bins", in: "total")),
                             temperatures: temperatures)
    }

    /// The counts and metrics of `o`'s exact `state` under `options`: computed as eval, merge and serve compute them.
    func metrics(_ o: JSONValue, options: MetricOptions, in place: String) throws(ReportInputError) -> MetricReport {
        guard let state = o["state"] else { throw ReportInputError("\(place).state is missing") }
        let accumulator: MetricAccumulator
        do { accumulator = try MetricAccumulator(jsonState: state) } catch { throw ReportInputError("\(place).state: \(error.description)") }
        guard accumulator.topK == options.topK, accumulator.eceBins == options.eceBins, accumulator.temperatures == options.allTemperatures else {
            throw ReportInputError("\(place).state has top_k \(accumulator.topK), ece_bins \(accumulator.eceBins) and temperatures \(accumulator.temperatures), "
                                   + "the total \(options.topK), \(options.eceBins) and \(options.allTemperatures)")
        }
        return MetricReport(accumulator, options: options)
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
