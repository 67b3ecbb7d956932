import SmoothdJSON

/// How much of its eval sets a group holds: over its runs whose shards state `num_shards` N (the largest
/// stated), the ranks expected, present (distinct live `shard_index` in [0, N)) and missing.
public struct Completeness: Sendable, Equatable {
    /// A missing rank: its run and index.
    public struct Missing: Sendable, Equatable {
        /// The run.
        public let run: RunKey
        /// The absent `shard_index`.
        public let shardIndex: Int64
    }

    /// ΣN over the runs.
    public let expected: Int64
    /// Σ present ranks.
    public let present: Int64
    /// The absent ranks, by run order then index.
    public let missing: [Missing]
    /// How many runs state `num_shards`: one lists missing indexes as integers, several as objects.
    public let runs: Int

    /// True when no rank is missing.
    public var isComplete: Bool { missing.isEmpty }

    /// `{"expected", "present", "missing"}`: `missing` holds integers for a group of one run, else
    /// `{"run": RUN KEY, "shard_index": i}` objects.
    public var json: JSONValue {
        let list: [JSONValue] = missing.map { m in
            runs == 1 ? .int(m.shardIndex) : .object([("run", m.run.json), (ShardPlacement.indexKey, .int(m.shardIndex))])
        }
        return .object([("expected", .int(expected)), ("present", .int(present)), ("missing", .array(list))])
    }

    /// The completeness of one group's live shards, and a warning per run whose shards disagree on N.
    static func of(_ shards: [RunLedger.Shard], group: RunKey) -> (Completeness?, [NumShardsDisagreement]) {
        var ranked = RankedRuns()
        for shard in shards { ranked.add(shard) }
        return of(ranked, group: group)
    }

    /// ``of(_:group:)`` from the ranks of a group's shards, collected in arrival order (``RankedRuns``): what an
    /// arrival costs in `serve` is this, not a pass over every member.
    static func of(_ ranked: RankedRuns, group: RunKey) -> (Completeness?, [NumShardsDisagreement]) {
        var warnings: [NumShardsDisagreement] = []
        var parts: [(run: RunKey, expected: Int64, present: Int64, missing: [Int64])] = []
        for ranks in ranked.runs {
            guard let n = ranks.largest else { continue }
            if ranks.disagree {
                warnings.append(NumShardsDisagreement(group: group, run: ranks.run, shards: ranks.stated, numShardsUsed: n))
            }
            // The stated indexes into a bitmap, then one pass over 0..<n: a hash lookup per rank made every arrival in
            // a run of 2,000 ranks cost 2,000 of them (most of the group commit's CPU in `serve`).
            var seen = [Bool](repeating: false, count: Int(n))
            var present: Int64 = 0
            for index in ranks.indices.keys where index >= 0 && index < n {
                seen[Int(index)] = true
                present += 1
            }
            var missing: [Int64] = []
            for i in 0..<Int(n) where !seen[i] { missing.append(Int64(i)) }
            parts.append((ranks.run, n, present, missing))
        }
        guard !parts.isEmpty else { return (nil, warnings) }
        parts.sort { $0.run < $1.run }
        let completeness = Completeness(
            expected: parts.reduce(0) { $0 + $1.expected }, present: parts.reduce(0) { $0 + $1.present },
            missing: parts.flatMap { part in part.missing.map { Missing(run: part.run, shardIndex: $0) } }, runs: parts.count)
        return (completeness, warnings)
    }
}

/// The ranks of a group's shards that state `shard_index` or `num_shards`, by run in order of first arrival: each
/// run's stated `num_shards` (in arrival order) and its indexes. Kept up to date one arrival at a time.
struct RankedRuns: Sendable {
    /// One run's ranks.
    struct Ranks: Sendable {
        /// The run.
        let run: RunKey
        /// Each shard stating `num_shards`, with its value, in arrival order.
        var stated: [(shard: String, numShards: Int64)] = []
        /// The indexes stated, with how many shards state each.
        var indices: [Int64: Int] = [:]
        /// The largest `num_shards` stated.
        var largest: Int64?
        /// Whether two shards state different `num_shards`.
        var disagree = false
    }

    /// The runs, in order of their first shard's arrival.
    private(set) var runs: [Ranks] = []
    private var position: [RunKey: Int] = [:]

    /// Adds `shard` (arriving after every shard added so far); a shard stating neither is ignored.
    mutating func add(_ shard: RunLedger.Shard) { add(shard.name, shard.placement) }

    /// Adds the shard `name` placed at `placement` (see ``add(_:)``).
    mutating func add(_ name: String, _ placement: ShardPlacement) {
        guard placement.shardIndex != nil || placement.numShards != nil else { return }
        let i: Int
        if let known = position[placement.run] {
            i = known
        } else {
            i = runs.count
            position[placement.run] = i
            runs.append(Ranks(run: placement.run))
        }
        if let n = placement.numShards {
            if let first = runs[i].stated.first, first.numShards != n { runs[i].disagree = true }
            runs[i].stated.append((name, n))
            runs[i].largest = max(runs[i].largest ?? n, n)
        }
        if let index = placement.shardIndex { runs[i].indices[index, default: 0] += 1 }
    }
}
