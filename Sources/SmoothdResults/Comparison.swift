import SmoothdJSON
import SmoothdMetrics
import SmoothdPipeline
import SmoothdRuns

/// The comparison of two groups of a merge: every metric's point values and difference b − a, and for the
/// bootstrap metrics a 95 % interval of the difference. The replicates are paired (replicate r of B minus replicate r
/// of A: the same weights on the same rows) when both groups evaluated the same rows: every shard of A has a shard of B
/// with the same `shard_index` and labels digest, and vice versa. Otherwise replicate R−1−r of B is set against
/// replicate r of A, so the two are independent even where a shard_index gave both the same weights.
public struct Comparison: Sendable {
    /// One metric's values.
    public struct Difference: Sendable {
        /// The metric's JSON name.
        public var metric: String
        /// A's value, B's, and b − a (nil when a group counted no row).
        public var a: Double?, b: Double?, difference: Double?
        /// Whether the metric gets an interval (the `BootstrapMetric`s).
        public var bootstrapped: Bool
        /// The 95 % interval of b − a, when both groups keep replicates.
        public var interval: BootstrapInterval?
    }

    /// The groups compared.
    public var a: GroupReport, b: GroupReport
    /// Whether the replicates are paired.
    public var paired: Bool
    /// Why, in a sentence.
    public var pairing: String
    /// R, 0 when the states keep no replicates (every interval is then null).
    public var replicates: Int
    /// The metrics in report order.
    public var differences: [Difference]

    /// Compares the group `a` selects with the group `b` selects in `report`.
    public init(_ report: MergeReport, a selectA: GroupSelector, b selectB: GroupSelector) throws(ComparisonError) {
        let groupBy = report.options.groupBy
        try selectA.check(against: groupBy)
        try selectB.check(against: groupBy)
        let groupA = try Comparison.group(selectA, "--a", in: report), groupB = try Comparison.group(selectB, "--b", in: report)
        guard groupA.key != groupB.key else {
            throw ComparisonError("--a '\(selectA)' and --b '\(selectB)' select the same group \(groupA.key): nothing to compare")
        }
        a = groupA
        b = groupB
        let shardsA = Comparison.shards(of: groupA.key, in: report), shardsB = Comparison.shards(of: groupB.key, in: report)
        let (isPaired, why) = Comparison.pairing(shardsA, shardsB)
        paired = isPaired
        pairing = why
        let options = report.options.metrics
        replicates = options.bootstrapReplicates
        var intervals: MetricIntervals?
        if let stateA = groupA.state.bootstrap, let stateB = groupB.state.bootstrap {
            let valuesA = stateA.replicateMetrics(options: options), valuesB = stateB.replicateMetrics(options: options)
            let r = valuesA.count
            intervals = MetricIntervals(replicates: (0..<r).map { i -> [Double]? in
                guard let x = valuesA[i], let y = valuesB[isPaired ? i : r - 1 - i] else { return nil }
                return zip(y, x).map { $0 - $1 }
            })
        }
        let va = groupA.metrics.values, vb = groupB.metrics.values
        let points: [(String, Double?, Double?, BootstrapMetric?)] = [
            ("loss", va.loss, vb.loss, .loss), ("nll", va.nll, vb.nll, .nll), ("perplexity", va.perplexity, vb.perplexity, nil),
            ("accuracy", va.accuracy, vb.accuracy, .accuracy), ("top_k_accuracy", va.topKAccuracy, vb.topKAccuracy, .topKAccuracy),
            ("mean_confidence", va.meanConfidence, vb.meanConfidence, nil), ("entropy", va.entropy, vb.entropy, nil),
            ("brier", va.brier, vb.brier, nil), ("ece", va.ece, vb.ece, .ece), ("mce", va.mce, vb.mce, nil),
        ]
        differences = points.map { name, x, y, metric in
            let difference: Double? = if let x, let y { y - x } else { nil }
            return Difference(metric: name, a: x, b: y, difference: difference, bootstrapped: metric != nil,
                              interval: metric.flatMap { intervals?[$0] })
        }
    }

    /// The one group `selector` matches, or an error naming the selector and the groups.
    static func group(_ selector: GroupSelector, _ flag: String, in report: MergeReport) throws(ComparisonError) -> GroupReport {
        let matching = report.groups.filter { selector.matches($0.key) }
        if matching.count == 1 { return matching[0] }
        let listed = report.groups.map(\.key.description).joined(separator: ", ")
        if matching.isEmpty {
            throw ComparisonError("\(flag) '\(selector)' matches no group (the groups: \(listed.isEmpty ? "none" : listed))")
        }
        throw ComparisonError("\(flag) '\(selector)' matches \(matching.count) groups (\(matching.map(\.key.description).joined(separator: ", "))): "
            + "add keys to the selector to choose one")
    }

    /// A counted shard of a group: what pairing looks at.
    struct PairingShard {
        var source: String
        var shardIndex: Int64?
        var digest: LabelDigest?
    }

    /// The counted shards of group `key`, in input order.
    static func shards(of key: RunKey, in report: MergeReport) -> [PairingShard] {
        report.entries.compactMap { entry in
            guard case .counted(let group) = entry.status, group == key else { return nil }
            return PairingShard(source: entry.record.source, shardIndex: entry.record.meta?[ShardPlacement.indexKey]?.intValue,
                                digest: entry.record.labelsDigest)
        }
    }

    /// Whether the two groups evaluated the same rows, and why (the first reason found when not).
    static func pairing(_ a: [PairingShard], _ b: [PairingShard]) -> (Bool, String) {
        for (side, shards) in [("A", a), ("B", b)] {
            if let shard = shards.first(where: { $0.shardIndex == nil }) { return (false, "\(side)'s shard \(shard.source) has no shard_index") }
            if let shard = shards.first(where: { $0.digest == nil }) {
                return (false, "\(side)'s shard \(shard.source) has no labels_digest (written by a smoothd without it)")
            }
        }
        let byIndexB = Dictionary(b.map { ($0.shardIndex!, $0) }, uniquingKeysWith: { first, _ in first })
        let indexesA = Set(a.map { $0.shardIndex! })
        for shard in a {
            guard let other = byIndexB[shard.shardIndex!] else {
                return (false, "shard_index \(shard.shardIndex!) is in A (\(shard.source)) but not in B")
            }
            let (x, y) = (shard.digest!, other.digest!)
            if x.rows != y.rows {
                return (false, "shard_index \(shard.shardIndex!): the row counts differ (\(x.rows) in \(shard.source), \(y.rows) in \(other.source))")
            }
            if x != y {
                return (false, "shard_index \(shard.shardIndex!): the labels differ (digest \(x.hexHash) in \(shard.source), \(y.hexHash) in \(other.source))")
            }
        }
        if let shard = b.first(where: { !indexesA.contains($0.shardIndex!) }) {
            return (false, "shard_index \(shard.shardIndex!) is in B (\(shard.source)) but not in A")
        }
        let noun = a.count == 1 ? "shard" : "shards"
        return (true, "each of the \(a.count) \(noun) of A has a shard of B with the same shard_index and labels digest, and vice versa")
    }
}

extension Comparison: JSONObjectEncodable {
    /// `{"a": KEY, "b": KEY, "paired", "pairing", "bootstrap": R or null, "differences": {METRIC: {"a", "b",
    /// "difference", "interval"}}}`; `interval` only for the bootstrap metrics, null without replicates.
    public var jsonMembers: [(String, JSONValue)] {
        [
            ("a", a.key.json), ("b", b.key.json), ("paired", .bool(paired)), ("pairing", .string(pairing)),
            ("bootstrap", replicates > 0 ? .int(Int64(replicates)) : .null),
            ("differences", .object(differences.map { d in
                var members: [(String, JSONValue)] = [("a", .number(d.a)), ("b", .number(d.b)), ("difference", .number(d.difference))]
                if d.bootstrapped { members.append(("interval", d.interval?.json ?? .null)) }
                return (d.metric, .object(members))
            })),
        ]
    }
}
