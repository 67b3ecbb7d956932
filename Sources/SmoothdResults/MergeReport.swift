import SmoothdJSON
import SmoothdMetrics
import SmoothdPipeline
import SmoothdRuns

/// What a merge computes: the metric options (only top-k and bins must match the states; any ε and mode
/// can be computed from a state), the group-by, and whether non-finite rows fail a shard, as for `eval`.
public struct MergeOptions: Sendable, Equatable {
    /// ε, mode, the extra ε values, top-k and ECE bins.
    public var metrics: MetricOptions
    /// The meta keys to group by.
    public var groupBy: GroupBy
    /// A shard whose state has non-finite rows counts as invalid (`nonfinite_rows`), as `eval --fail-on-nonfinite`.
    public var failOnNonfinite: Bool

    /// Options as `eval`'s defaults unless given.
    public init(metrics: MetricOptions = MetricOptions(), groupBy: GroupBy = .standard, failOnNonfinite: Bool = false) {
        self.metrics = metrics
        self.groupBy = groupBy
        self.failOnNonfinite = failOnNonfinite
    }
}

/// The merge of shard records from several inputs: per group and in total, bit-identical (timing aside) to
/// one `smoothd eval` over all the underlying shards with the same options, because it is the same exact
/// merge (`RunLedger`) of the same states under the same run rules (`ShardPlacement`).
///
/// Two records with one identity (`ShardIdentity`) are one shard, counted once: when both carry
/// `processed_at` (serve summaries) the later time wins, ties going to the later input; otherwise the
/// record later in input order wins (inputs in the order given, records in file order). Among more than two,
/// the rule is applied to all of them at once: the latest `processed_at` when every one has it, else the last.
/// Each dropped record is a `supersessions` entry and a warning.
///
/// A bad record (unreadable file, not JSON, unknown `state_version`, counts that do not add up, a state of
/// another top-k or bin count) is in its input's `errors` and counted nowhere; `hasErrors` is then true. An
/// invalid shard (an error record, or a shard breaking a run rule) is counted in `total.shardsFailed`, as
/// `eval` counts it.
public struct MergeReport: Sendable {
    /// One input and what it contributed.
    public struct InputReport: Sendable {
        /// The path as given.
        public var path: String
        /// Its kind (nil when nothing could be read).
        public var kind: ResultInputKind?
        /// Valid shard records read from it (superseded ones included).
        public var shardsOK: Int
        /// Invalid shard records read from it (error records, and shards breaking a run rule).
        public var shardsFailed: Int
        /// Its problems: records not used.
        public var errors: [ResultInputError]
    }

    /// Where one record went.
    public enum Status: Sendable {
        /// Counted in this group.
        case counted(group: RunKey)
        /// Not counted: this later record of the same shard is (its `source`).
        case superseded(by: String)
        /// An invalid shard: the error record's, or the run rule it breaks (`group_key_not_scalar`, …).
        case invalid(kind: String, offset: UInt64?, reason: String)
    }

    /// One shard record in input order, with its status.
    public struct Entry: Sendable {
        /// The record.
        public var record: ResultRecord
        /// Where it went.
        public var status: Status

        /// Its own counts and metrics under `options` (valid records only). Computed on demand: a merge of many
        /// records needs only the groups' and the total's.
        public func metrics(options: MetricOptions) -> MetricReport? {
            guard case .valid(let state) = record.outcome else { return nil }
            return MetricReport(state, options: options)
        }
    }

    /// A record dropped for a newer one of the same shard.
    public struct Supersession: Sendable, CustomStringConvertible {
        /// The record counted (its `source`).
        public var kept: String
        /// The record not counted.
        public var dropped: String
        /// What they share.
        public var identity: ShardIdentity

        /// `KEPT supersedes DROPPED (the same shard: IDENTITY); only KEPT is counted`.
        public var description: String { "\(kept) supersedes \(dropped) (the same shard: \(identity)); only \(kept) is counted" }
    }

    /// The options merged with.
    public var options: MergeOptions
    /// The inputs, in the order given.
    public var inputs: [InputReport]
    /// Every record read, in input order.
    public var entries: [Entry]
    /// The groups of the counted shards, in key order (as `eval`'s).
    public var groups: [GroupReport]
    /// The total over the counted shards (as `eval`'s).
    public var total: TotalReport
    /// Records dropped for newer ones.
    public var supersessions: [Supersession]
    /// Runs whose shards disagree on `num_shards`.
    public var disagreements: [NumShardsDisagreement]
    /// Warning lines, in the order: empty directories and omitted meta (input order), supersessions, disagreeing
    /// `num_shards`, non-finite rows.
    public var warnings: [String]

    /// True when any input had a problem (the exit status of `smoothd merge` is then 1).
    public var hasErrors: Bool { inputs.contains { !$0.errors.isEmpty } }

    /// Every input problem, in input order.
    public var errors: [ResultInputError] { inputs.flatMap(\.errors) }

    /// Merges `inputs` (in the order given) under `options`.
    public init(_ inputs: [ResultInput], options: MergeOptions) {
        self.options = options
        let metricOptions = options.metrics
        var reports: [InputReport] = []
        var entries: [Entry] = []
        var warnings: [String] = []
        // Placed valid entries per identity, in input order.
        var byIdentity: [ShardIdentity: [Int]] = [:]
        var identityOrder: [ShardIdentity] = []
        var placements: [Int: ShardPlacement] = [:]
        for input in inputs {
            var report = InputReport(path: input.path, kind: input.kind, shardsOK: 0, shardsFailed: 0, errors: input.errors)
            if input.kind == .directory, input.records.isEmpty, input.errors.isEmpty {
                warnings.append("\(input.path): no *.summary.json or *.error.json in this directory (is it a serve output directory?)")
            }
            // States of other top-k, bins, temperatures or bootstrap R: one error each, naming the first record.
            var mismatches: [StateSettings: (first: ResultRecord, count: Int)] = [:]
            var mismatchOrder: [StateSettings] = []
            for record in input.records {
                let status: Status
                switch record.outcome {
                case .invalid(let kind, let offset, let reason):
                    status = .invalid(kind: kind, offset: offset, reason: reason)
                case .valid(let state):
                    let settings = StateSettings(state)
                    guard settings == StateSettings(metricOptions) else {
                        if mismatches[settings] == nil { mismatchOrder.append(settings) }
                        mismatches[settings, default: (record, 0)].count += 1
                        continue
                    }
                    if options.failOnNonfinite, state.nonfiniteRows > 0 {
                        status = .invalid(kind: FailureKind.nonfiniteRows.name, offset: nil,
                                          reason: NonfiniteRows.sentence(state) + " (--fail-on-nonfinite)")
                        break
                    }
                    if record.metaOmitted {
                        warnings.append("\(record.source): serve omitted this shard's meta (too large or too deep); it is placed as a shard without meta")
                    }
                    switch ShardPlacement.place(shard: record.shard, meta: record.meta, groupBy: options.groupBy) {
                    case .failure(let error):
                        status = .invalid(kind: error.rule.rawValue, offset: RunRuleError.metaOffset, reason: error.reason)
                    case .success(let placement):
                        status = .counted(group: placement.group)
                        placements[entries.count] = placement
                        if byIdentity[placement.identity] == nil { identityOrder.append(placement.identity) }
                        byIdentity[placement.identity, default: []].append(entries.count)
                    }
                }
                if case .invalid = status { report.shardsFailed += 1 } else { report.shardsOK += 1 }
                entries.append(Entry(record: record, status: status))
            }
            for settings in mismatchOrder {
                let (first, count) = mismatches[settings]!
                let more = count > 1 ? " (and \(count - 1) more record\(count == 2 ? "" : "s") of this input)" : ""
                let expected = StateSettings(metricOptions)
                report.errors.append(ResultInputError(file: first.file, key: [first.key, "state"].compactMap { $0 }.joined(separator: "."),
                    reason: "state computed with \(settings.phrase(against: expected))\(more); this merge uses \(expected.phrase(against: settings)), "
                        + "and states cannot be converted: merge them with \(settings.flags(against: expected))"))
            }
            reports.append(report)
        }

        var supersessions: [Supersession] = []
        for identity in identityOrder {
            let members = byIdentity[identity]!
            guard members.count > 1 else { continue }
            let times = members.map { entries[$0].record.processedAt }
            var winner = members.last!
            if !times.contains(where: { $0 == nil }) {
                // Latest time; among equal times the later input (indexes are in input order).
                winner = zip(members, times).max { a, b in a.1! < b.1! || (a.1! == b.1! && a.0 < b.0) }!.0
            }
            for member in members where member != winner {
                entries[member].status = .superseded(by: entries[winner].record.source)
                supersessions.append(Supersession(kept: entries[winner].record.source, dropped: entries[member].record.source, identity: identity))
            }
        }
        warnings += supersessions.map(\.description)

        var ledger = RunLedger(groupBy: options.groupBy, options: metricOptions)
        var failed = 0
        for (index, entry) in entries.enumerated() {
            switch entry.status {
            case .counted:
                guard case .valid(let state) = entry.record.outcome else { continue }
                ledger.record(entry.record.source, placement: placements[index]!, accumulator: state)
            case .invalid: failed += 1
            case .superseded: continue
            }
        }
        let (groups, disagreements) = ledger.groups()
        warnings += disagreements.map(\.description)
        for entry in entries {
            guard case .counted = entry.status, case .valid(let state) = entry.record.outcome, state.nonfiniteRows > 0 else { continue }
            warnings.append("\(entry.record.source): \(NonfiniteRows.sentence(state)); they are left out of every metric "
                + "(PyTorch would give NaN); --fail-on-nonfinite makes this an error")
        }
        self.inputs = reports
        self.entries = entries
        self.groups = groups.map { GroupReport($0, options: metricOptions) }
        total = TotalReport(accumulator: ledger.total, shardsOK: ledger.liveShards.count, shardsFailed: failed, options: metricOptions)
        self.supersessions = supersessions
        self.disagreements = disagreements
        self.warnings = warnings
    }

    /// Loads every path (`ResultInput.load`) and merges them.
    public init(paths: [String], options: MergeOptions) {
        self.init(paths.map(ResultInput.load), options: options)
    }
}

extension MergeReport.InputReport: JSONObjectEncodable {
    /// `path`, `kind` (`eval`, `summary`, `error`, `directory`, or null when unreadable), `shards_ok`,
    /// `shards_failed`, `errors` (`[{"file", "key", "offset", "reason"}]`, empty for a good input).
    public var jsonMembers: [(String, JSONValue)] {
        [("path", .string(path)), ("kind", kind.map { .string($0.rawValue) } ?? .null),
         ("shards_ok", .int(Int64(shardsOK))), ("shards_failed", .int(Int64(shardsFailed))),
         ("errors", .array(errors.map(\.json)))]
    }
}

extension MergeReport: JSONObjectEncodable {
    /// `{"inputs": [INPUT, …], "groups": [GROUP, …], "total": TOTAL}`, GROUP and TOTAL as in `eval --json`.
    public var jsonMembers: [(String, JSONValue)] {
        [("inputs", .array(inputs.map(\.json))), ("groups", .array(groups.map(\.json))), ("total", total.json)]
    }
}
