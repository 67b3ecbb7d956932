import SmoothdJSON
import SmoothdMetrics

/// The shards of one result set in arrival order (command-line order for `eval`), which of them are live
/// (the newest of each identity), and their groups. A single-owner value: no I/O, no clock.
///
/// Group metrics are the merge of the live members' accumulators; exact sums make the merge order
/// irrelevant, so a group's totals are bit-identical to `eval` over the same shards.
public struct RunLedger: Sendable {
    /// One recorded shard.
    public struct Shard: Sendable {
        /// Its name as the caller gave it (a path, or a spool file name).
        public let name: String
        /// Where it belongs.
        public let placement: ShardPlacement
        /// Its metric state.
        public let accumulator: MetricAccumulator
        /// The shard that replaced it, when it is no longer live.
        public fileprivate(set) var supersededBy: String?

        /// True unless a re-run replaced it.
        public var isLive: Bool { supersededBy == nil }

        /// A live shard.
        init(name: String, placement: ShardPlacement, accumulator: MetricAccumulator) {
            self.name = name
            self.placement = placement
            self.accumulator = accumulator
        }
    }

    /// The group-by every placement was made under.
    public let groupBy: GroupBy
    private let options: MetricOptions
    /// Every recorded shard, in arrival order.
    public private(set) var shards: [Shard] = []
    private var liveByIdentity: [ShardIdentity: Int] = [:]
    /// The supersessions so far, in the order they happened.
    public private(set) var supersessions: [Supersession] = []

    /// An empty ledger whose accumulators use `options` (top-k and bins).
    public init(groupBy: GroupBy, options: MetricOptions) {
        self.groupBy = groupBy
        self.options = options
    }

    /// Records the shard `name` (O(1)); when a live shard has its identity, that one is superseded and
    /// the supersession is returned.
    @discardableResult
    public mutating func record(_ name: String, placement: ShardPlacement, accumulator: MetricAccumulator) -> Supersession? {
        shards.append(Shard(name: name, placement: placement, accumulator: accumulator))
        let index = shards.count - 1
        defer { liveByIdentity[placement.identity] = index }
        guard let old = liveByIdentity[placement.identity] else { return nil }
        shards[old].supersededBy = name
        let supersession = Supersession(superseded: shards[old].name, by: name, identity: placement.identity, position: old)
        supersessions.append(supersession)
        return supersession
    }

    /// The live shards, in arrival order.
    public var liveShards: [Shard] { shards.filter(\.isLive) }

    /// The merge of every live shard.
    public var total: MetricAccumulator {
        liveShards.reduce(into: MetricAccumulator(options: options)) { $0.merge($1.accumulator) }
    }

    /// The groups of the live shards in the documented key order, and the warnings their runs give.
    public func groups() -> (groups: [RunGroup], warnings: [NumShardsDisagreement]) {
        var order: [RunKey: Int] = [:]
        var members: [[Shard]] = []
        for shard in shards where shard.isLive {
            if let i = order[shard.placement.group] {
                members[i].append(shard)
            } else {
                order[shard.placement.group] = members.count
                members.append([shard])
            }
        }
        var groups: [RunGroup] = []
        var warnings: [NumShardsDisagreement] = []
        for list in members.sorted(by: { $0[0].placement.group < $1[0].placement.group }) {
            let (group, disagreements) = RunGroup.of(list, options: options)
            warnings += disagreements
            groups.append(group)
        }
        return (groups, warnings)
    }
}

/// A re-run replacing an earlier shard of the same identity.
public struct Supersession: Sendable, Equatable, CustomStringConvertible {
    /// The shard no longer counted.
    public let superseded: String
    /// The shard counted instead.
    public let by: String
    /// What they share.
    public let identity: ShardIdentity
    /// The superseded shard's position in arrival order (names may repeat).
    public let position: Int

    /// `BY supersedes SUPERSEDED (the same shard: IDENTITY); only BY is counted`.
    public var description: String {
        "\(by) supersedes \(superseded) (the same shard: \(identity)); only \(by) is counted"
    }
}

/// One group of live shards: its key, members, completeness and merged metric state.
public struct RunGroup: Sendable {
    /// The group key.
    public let key: RunKey
    /// Its live shards, in arrival order.
    public internal(set) var shards: [String]
    /// How many ranks its runs have of those they state, or nil when no shard states `num_shards`.
    public internal(set) var completeness: Completeness?
    /// The merge of its shards' states.
    public internal(set) var accumulator: MetricAccumulator

    /// The group of `members` (live shards of one group key, in arrival order, at least one) and the warnings
    /// of its runs. The first member's key is shown: values equal in the order are one value (1 and 1.0).
    static func of(_ members: [RunLedger.Shard], options: MetricOptions) -> (RunGroup, [NumShardsDisagreement]) {
        let key = members[0].placement.group
        var accumulator = MetricAccumulator(options: options)
        for shard in members { accumulator.merge(shard.accumulator) }
        let (completeness, disagreements) = Completeness.of(members, group: key)
        return (RunGroup(key: key, shards: members.map(\.name), completeness: completeness, accumulator: accumulator), disagreements)
    }
}

/// Shards of one run stating different `num_shards`; the largest is used.
public struct NumShardsDisagreement: Sendable, Equatable, CustomStringConvertible {
    /// The group the run is in.
    public let group: RunKey
    /// The run.
    public let run: RunKey
    /// Every shard of the run that states `num_shards`, with its value, in arrival order.
    public let shards: [(shard: String, numShards: Int64)]
    /// The value used: the largest.
    public let numShardsUsed: Int64

    /// Equal when every member is.
    public static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.group == rhs.group && lhs.run == rhs.run && lhs.numShardsUsed == rhs.numShardsUsed
            && lhs.shards.map(\.shard) == rhs.shards.map(\.shard) && lhs.shards.map(\.numShards) == rhs.shards.map(\.numShards)
    }

    /// Names every shard with its value.
    public var description: String {
        "shards of run \(run) disagree on num_shards: " + shards.map { "\($0.shard): \($0.numShards)" }.joined(separator: ", ")
            + "; using \(numShardsUsed)"
    }
}
