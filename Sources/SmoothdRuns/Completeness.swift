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
        var order: [RunKey: Int] = [:]
        var runs: [(run: RunKey, shards: [RunLedger.Shard])] = []
        for shard in shards where shard.placement.shardIndex != nil || shard.placement.numShards != nil {
            if let i = order[shard.placement.run] {
                runs[i].shards.append(shard)
            } else {
                order[shard.placement.run] = runs.count
                runs.append((shard.placement.run, [shard]))
            }
        }
        var warnings: [NumShardsDisagreement] = []
        var parts: [(run: RunKey, expected: Int64, present: Int64, missing: [Int64])] = []
        for (run, members) in runs {
            let stated = members.compactMap { s in s.placement.numShards.map { (shard: s.name, numShards: $0) } }
            guard let n = stated.map(\.numShards).max() else { continue }
            if Set(stated.map(\.numShards)).count > 1 {
                warnings.append(NumShardsDisagreement(group: group, run: run, shards: stated, numShardsUsed: n))
            }
            let have = Set(members.compactMap(\.placement.shardIndex).filter { $0 < n })
            parts.append((run, n, Int64(have.count), (0..<n).filter { !have.contains($0) }))
        }
        guard !parts.isEmpty else { return (nil, warnings) }
        parts.sort { $0.run < $1.run }
        let completeness = Completeness(
            expected: parts.reduce(0) { $0 + $1.expected }, present: parts.reduce(0) { $0 + $1.present },
            missing: parts.flatMap { part in part.missing.map { Missing(run: part.run, shardIndex: $0) } }, runs: parts.count)
        return (completeness, warnings)
    }
}
