import LSHDFormat
import SmoothdJSON
import SmoothdMetrics
import SmoothdRuns

/// What `smoothd eval` reports: one entry per shard in the order given, the groups of the live shards,
/// their total, and what deserves a warning. The run rules (group keys, ranks, supersession) are those of
/// `SmoothdRuns`; a shard breaking one is an entry with `ok: false`.
public struct EvalReport: Sendable {
    /// One shard's entry and where it went.
    public struct Entry: Sendable {
        /// Its report entry.
        public var entry: ReportEntry
        /// Its group, when it was placed in one.
        public var group: RunKey?
        /// The later shard counted instead, when a re-run superseded it.
        public var supersededBy: String?
    }

    /// The entries, in the order given.
    public var shards: [Entry]
    /// The groups of the live shards, in key order.
    public var groups: [GroupReport]
    /// The total over the live shards.
    public var total: TotalReport
    /// Re-runs, in the order given.
    public var supersessions: [Supersession]
    /// Runs whose shards disagree on `num_shards`, in group order.
    public var disagreements: [NumShardsDisagreement]
    /// Live shards with non-finite rows (counted, with those rows left out), in the order given.
    public var nonfinite: [ShardEntry]

    /// The report of `outcomes` (in command-line order: a later shard supersedes an earlier one of the
    /// same identity) grouped by `groupBy`; with `failOnNonfinite`, shards with non-finite rows fail.
    public init(_ outcomes: [ShardOutcome], groupBy: GroupBy, options: MetricOptions, failOnNonfinite: Bool = false) {
        var ledger = RunLedger(groupBy: groupBy, options: options)
        var entries: [Entry] = []
        var failed = 0
        var ledgerIndex: [Int] = []  // entries index of each ledger shard
        for outcome in outcomes {
            switch EvalReport.admit(outcome, groupBy: groupBy, failOnNonfinite: failOnNonfinite) {
            case .failure(let failure):
                failed += 1
                entries.append(Entry(entry: .invalid(failure), group: nil, supersededBy: nil))
            case .success(let (summary, placement)):
                if let supersession = ledger.record(summary.shard, placement: placement, accumulator: summary.accumulator) {
                    entries[ledgerIndex[supersession.position]].supersededBy = supersession.by
                }
                ledgerIndex.append(entries.count)
                entries.append(Entry(entry: .valid(ShardEntry(summary, options: options)), group: placement.group, supersededBy: nil))
            }
        }
        let (groups, disagreements) = ledger.groups()
        shards = entries
        self.groups = groups.map { GroupReport($0, options: options) }
        total = TotalReport(accumulator: ledger.total, shardsOK: ledger.liveShards.count, shardsFailed: failed, options: options)
        supersessions = ledger.supersessions
        self.disagreements = disagreements
        nonfinite = entries.compactMap { entry in
            guard entry.supersededBy == nil, case .valid(let shard) = entry.entry, shard.metrics.nonfiniteRows > 0 else { return nil }
            return shard
        }
    }

    /// The shard's summary and placement, or why it is not counted (a run rule broken, or non-finite rows with
    /// `failOnNonfinite`). `serve` admits each shard by the same rule.
    public static func admit(_ outcome: ShardOutcome, groupBy: GroupBy, failOnNonfinite: Bool) -> Result<(ShardSummary, ShardPlacement), ShardFailure> {
        let summary: ShardSummary
        switch outcome {
        case .failure(let failure): return .failure(failure)
        case .success(let s): summary = s
        }
        func failure(_ kind: FailureKind, at offset: UInt64?, _ reason: String) -> ShardFailure {
            ShardFailure(shard: summary.shard, error: EvaluationError(kind, at: offset, reason),
                         compressedBytes: summary.compressedBytes, payloadBytes: summary.payloadBytes)
        }
        let accumulator = summary.accumulator
        if failOnNonfinite, accumulator.nonfiniteRows > 0 {
            return .failure(failure(.nonfiniteRows, at: nil, NonfiniteRows.sentence(accumulator) + " (--fail-on-nonfinite)"))
        }
        switch ShardPlacement.place(shard: summary.shard, meta: summary.header.meta, groupBy: groupBy) {
        case .failure(let error): return .failure(failure(.run(error.rule), at: RunRuleError.metaOffset, error.reason))
        case .success(let placement): return .success((summary, placement))
        }
    }
}

/// A warning of a report: what `eval` prints on stderr, and `eval --json` lists in `warnings`.
public struct ReportWarning: Sendable {
    /// `superseded`, `num_shards_disagree` or `nonfinite_rows`.
    public var kind: String
    /// The shards it names: the superseded one and the one counted instead; every shard of the disagreeing run;
    /// the shard with non-finite rows.
    public var shards: [String]
    /// The stderr line (without the `smoothd: warning: ` prefix).
    public var message: String
}

extension ReportWarning: JSONObjectEncodable {
    /// `{"kind", "shards", "message"}`.
    public var jsonMembers: [(String, JSONValue)] {
        [("kind", .string(kind)), ("shards", .array(shards.map { .string($0) })), ("message", .string(message))]
    }
}

extension EvalReport {
    /// One warning per re-run, per run disagreeing on num_shards, per live shard with non-finite rows, in that order.
    public var warnings: [ReportWarning] {
        supersessions.map { ReportWarning(kind: "superseded", shards: [$0.superseded, $0.by], message: $0.description) }
            + disagreements.map { ReportWarning(kind: "num_shards_disagree", shards: $0.shards.map(\.shard), message: $0.description) }
            + nonfinite.map { shard in
                ReportWarning(kind: FailureKind.nonfiniteRows.name, shards: [shard.summary.shard], message:
                    "\(shard.summary.shard): \(NonfiniteRows.sentence(shard.summary.accumulator)); they are left out of every metric "
                        + "(PyTorch would give NaN); --fail-on-nonfinite makes this an error")
            }
    }
}

/// How reports describe non-finite rows.
public enum NonfiniteRows {
    /// `N of M rows (F%) have a non-finite logit`: all rows counted in M, ignored ones included.
    public static func sentence(_ accumulator: MetricAccumulator) -> String {
        let fraction = accumulator.rows == 0 ? 0 : Double(accumulator.nonfiniteRows) / Double(accumulator.rows)
        let percent = (fraction * 100_000).rounded() / 1000
        return "\(accumulator.nonfiniteRows) of \(accumulator.rows) rows (fraction \(fraction), \(percent)%) have a non-finite logit"
    }
}

/// One group of a report: its key, how many live shards it has, its completeness and its metrics.
public struct GroupReport: Sendable {
    /// The group, as the ledger holds it.
    public var group: RunGroup
    /// Counts and metrics of its shards together.
    public var metrics: MetricReport

    /// The report of `group` under `options`.
    public init(_ group: RunGroup, options: MetricOptions) {
        self.group = group
        metrics = MetricReport(group.accumulator, options: options)
    }

    /// The group key.
    public var key: RunKey { group.key }
    /// Its live shards, in the order given.
    public var shards: [String] { group.shards }
    /// Ranks expected, present and missing, when a shard states `num_shards`.
    public var completeness: Completeness? { group.completeness }
    /// The exact merged state of its shards (docs/STATE-FORMAT.md).
    public var state: MetricAccumulator { group.accumulator }
}

extension GroupReport: JSONObjectEncodable {
    /// `key`, `shards` (a count), `completeness` when known, then the counts and metrics as in `total`, then
    /// the exact `state`.
    public var jsonMembers: [(String, JSONValue)] {
        [("key", key.json), ("shards", .int(Int64(shards.count)))]
            + (completeness.map { [("completeness", $0.json)] } ?? []) + metrics.jsonMembers + [("state", state.jsonState())]
    }
}

extension EvalReport.Entry: JSONObjectEncodable {
    /// The shard's entry, then `group` (placed shards), `superseded_by` (re-run ones) and the exact `state`
    /// (valid shards), which `smoothd.results.merge` reads.
    public var jsonMembers: [(String, JSONValue)] {
        var members = entry.jsonMembers + (group.map { [("group", $0.json)] } ?? [])
            + (supersededBy.map { [("superseded_by", .string($0))] } ?? [])
        if case .valid(let shard) = entry { members.append(("state", shard.summary.accumulator.jsonState())) }
        return members
    }
}

extension EvalReport: JSONObjectEncodable {
    /// `{"shards": [ENTRY, …], "total": TOTAL, "groups": [GROUP, …], "warnings": [WARNING, …]}`.
    public var jsonMembers: [(String, JSONValue)] {
        [("shards", .array(shards.map(\.json))), ("total", total.json), ("groups", .array(groups.map(\.json))),
         ("warnings", .array(warnings.map(\.json)))]
    }
}
