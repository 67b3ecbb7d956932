import SmoothdJSON

/// A rule of runs a shard's meta breaks; `rawValue` is the error kind reports write.
public enum RunRule: String, Sendable, CaseIterable {
    /// A `--group-by` key whose value is an array or object.
    case groupKeyNotScalar = "group_key_not_scalar"
    /// `shard_index` or `num_shards` of the wrong type or range, or `shard_index` ≥ `num_shards`.
    case badShardIndex = "bad_shard_index"
}

/// Why a shard's meta cannot be placed in a run: the rule, the meta key and the reason.
public struct RunRuleError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The payload offset these errors are reported at: where meta starts.
    public static let metaOffset: UInt64 = 32

    /// The rule broken.
    public var rule: RunRule
    /// The meta key at fault.
    public var key: String
    /// What is wrong, naming the key and its value.
    public var reason: String

    /// `RULE: REASON`.
    public var description: String { "\(rule.rawValue): \(reason)" }
}

/// Which shard a file is, under one group-by: its group, its run, its rank and its identity.
public struct ShardPlacement: Sendable, Equatable {
    /// `shard_index` and `num_shards`, the meta keys of ranks.
    public static let indexKey = "shard_index", countKey = "num_shards"
    /// The largest `num_shards` accepted: completeness lists every missing rank, so N must stay listable.
    public static let maximumNumShards: Int64 = 1_000_000

    /// The group key (`--group-by` keys, in order).
    public let group: RunKey
    /// The run key (`GroupBy.runKeys`).
    public let run: RunKey
    /// `shard_index`, when meta has it.
    public let shardIndex: Int64?
    /// `num_shards`, when meta has it.
    public let numShards: Int64?
    /// What a re-run of this shard shares with it.
    public let identity: ShardIdentity

    /// The placement of the shard named `shard` (a path; its last component is the name identity) with
    /// `meta`, or the rule it breaks. The group-key check comes first, then the ranks.
    public static func place(shard: String, meta: JSONValue?, groupBy: GroupBy) -> Result<ShardPlacement, RunRuleError> {
        for key in groupBy.keys {
            switch meta?[key] {
            case .array, .object:
                let value = meta![key]!
                let what = value.arrayValue != nil ? "an array" : "an object"
                return .failure(RunRuleError(rule: .groupKeyNotScalar, key: key,
                    reason: "meta key '\(key)' is \(what) (\(value.serialized())); a group-by key must be a string, number, boolean or null"))
            default: continue
            }
        }
        var numShards: Int64?
        if let value = meta?[countKey] {
            guard let n = integral(value), n >= 1 else {
                return .failure(RunRuleError(rule: .badShardIndex, key: countKey,
                    reason: "meta \(countKey) is \(value.serialized()); it must be an integer >= 1"))
            }
            guard n <= maximumNumShards else {
                return .failure(RunRuleError(rule: .badShardIndex, key: countKey,
                    reason: "meta \(countKey) \(n) is above the limit \(maximumNumShards)"))
            }
            numShards = n
        }
        var shardIndex: Int64?
        if let value = meta?[indexKey] {
            guard let i = integral(value), i >= 0 else {
                return .failure(RunRuleError(rule: .badShardIndex, key: indexKey,
                    reason: "meta \(indexKey) is \(value.serialized()); it must be an integer >= 0"))
            }
            if let numShards, i >= numShards {
                return .failure(RunRuleError(rule: .badShardIndex, key: indexKey,
                    reason: "meta \(indexKey) \(i) is not below \(countKey) \(numShards)"))
            }
            shardIndex = i
        }
        let run = RunKey(keys: groupBy.runKeys, meta: meta)
        let identity: ShardIdentity = shardIndex.map { .rank(run: run, index: $0) } ?? .name(ShardIdentity.baseName(shard))
        return .success(ShardPlacement(group: RunKey(keys: groupBy.keys, meta: meta), run: run,
                                       shardIndex: shardIndex, numShards: numShards, identity: identity))
    }

    /// An integer, integral JSON numbers included (`2.0` is 2; `true`, `"2"`, `1.5` are not).
    private static func integral(_ value: JSONValue) -> Int64? {
        switch value {
        case .int, .double: return value.intValue
        default: return nil
        }
    }
}

/// A shard's identity: (run key, `shard_index`) when meta has `shard_index`, else its file name.
/// A later shard with the identity of an earlier one is a re-run and supersedes it.
public enum ShardIdentity: Sendable, Hashable, CustomStringConvertible {
    /// Rank `index` of `run`.
    case rank(run: RunKey, index: Int64)
    /// The file name, without its directory.
    case name(String)

    /// `{"run": RUN KEY, "shard_index": i}` or `{"name": NAME}`.
    public var json: JSONValue {
        switch self {
        case .rank(let run, let index): return .object([("run", run.json), (ShardPlacement.indexKey, .int(index))])
        case .name(let name): return .object([("name", .string(name))])
        }
    }

    /// Equal ranks of equal runs, or names with the same code points (not Swift's canonical equivalence,
    /// which would make two files that differ in Unicode normalization one shard).
    public static func == (lhs: ShardIdentity, rhs: ShardIdentity) -> Bool {
        switch (lhs, rhs) {
        case (.rank(let a, let i), .rank(let b, let j)): return a == b && i == j
        case (.name(let a), .name(let b)): return a.utf8.elementsEqual(b.utf8)
        default: return false
        }
    }

    /// Hashes what `==` compares.
    public func hash(into hasher: inout Hasher) {
        switch self {
        case .rank(let run, let index):
            hasher.combine(0)
            hasher.combine(run)
            hasher.combine(index)
        case .name(let name):
            hasher.combine(1)
            hasher.combine(Array(name.utf8))
        }
    }

    /// For messages: `run {…} shard_index i` or `file name NAME`.
    public var description: String {
        switch self {
        case .rank(let run, let index): return "run \(run) shard_index \(index)"
        case .name(let name): return "file name \(name)"
        }
    }

    /// The last path component (what `serve` sees as the file name).
    static func baseName(_ path: String) -> String {
        path.split(separator: "/", omittingEmptySubsequences: false).last.map(String.init) ?? path
    }
}

/// Lets placements share the storage of equal group and run keys: at start 100,000 placements hold a few hundred
/// distinct keys, each otherwise its own arrays. Keys are shared only when their members are the same to the letter
/// (`1` and `1.0` are one key in the order but stay apart here, as a group shows its first member's values).
public struct RunKeyTable: Sendable {
    private var seen: [RunKey: [RunKey]] = [:]

    /// An empty table.
    public init() {}

    /// `placement` with its keys replaced by the same keys seen before, if any.
    public mutating func shared(_ placement: ShardPlacement) -> ShardPlacement {
        let run = shared(placement.run)
        var identity = placement.identity
        if case .rank(_, let index) = identity { identity = .rank(run: run, index: index) }
        return ShardPlacement(group: shared(placement.group), run: run, shardIndex: placement.shardIndex,
                              numShards: placement.numShards, identity: identity)
    }

    private mutating func shared(_ key: RunKey) -> RunKey {
        let same = { (other: RunKey) in
            other.members.count == key.members.count && zip(other.members, key.members).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        }
        if let known = seen[key]?.first(where: same) { return known }
        seen[key, default: []].append(key)
        return key
    }
}
