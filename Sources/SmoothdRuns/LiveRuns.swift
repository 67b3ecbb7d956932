import SmoothdMetrics

/// The live shards of a result set that grows one shard at a time (`serve`): the newest shard of each identity,
/// in groups whose reports are kept up to date as shards arrive. The rules are ``RunLedger``'s (identity,
/// supersession, group order, completeness, exact merges), but a superseded shard is dropped and a live one keeps
/// only its name, placement and a ``StateCheck``: each group keeps the merge of its members' states (a
/// ``StateSum``), and a supersession subtracts the old shard's state, read back through the caller's `stateOf`
/// (its record is still there). So memory grows with the number of live shards by a few hundred bytes each, not by
/// their states. A single-owner value: no I/O of its own, no clock (times are passed in).
public struct LiveRuns: Sendable {
    /// A live shard: what its group needs to take it out again.
    public struct Member: Sendable {
        /// Its name as the caller gave it (a spool record name).
        public let name: String
        /// Where it belongs.
        public let placement: ShardPlacement
        /// Figures of the state merged, to check the one read back.
        public let check: StateCheck
    }

    /// What an arrival or a removal changed.
    public struct Departure: Sendable {
        /// The live shard taken out (the one an arrival superseded), if any.
        public var superseded: Member?
        /// Members no longer counted: the state read back for the shard taken out was not the one merged, so its
        /// group was merged again from its members' states, and these could not be read back (or had changed).
        public var uncounted: [String] = []
    }

    /// One group's live members (by arrival number), their merged state and its report's parts.
    private struct GroupState: Sendable {
        /// The members with their arrival numbers, in arrival order (an array: a dictionary costs twice the memory).
        var members: [(arrival: Int, member: Member)] = []
        /// The first live member's group key (values equal in the order are one value: 1 and 1.0).
        var key: RunKey
        /// The members' names in arrival order.
        var shards: [String] = []
        var sum: StateSum
        var completeness: Completeness?
        var warnings: [NumShardsDisagreement] = []
        /// The ranks its members state, kept as they arrive, so that completeness is not recomputed from every member.
        var ranked = RankedRuns()
        /// The latest time a member arrived or left (seconds since the epoch).
        var updated: Double = 0

        var report: RunGroup { RunGroup(key: key, shards: shards, completeness: completeness, accumulator: sum.accumulator) }

        mutating func join(_ member: Member, arrival: Int, time: Double) {
            members.append((arrival, member))
            shards.append(member.name)
            updated = max(updated, time)
            ranked.add(member.name, member.placement)  // ignores a shard that states no rank
        }

        /// The index in `members` of the member that arrived `arrival`th.
        func position(of arrival: Int) -> Int? {
            var low = 0, high = members.count
            while low < high {
                let mid = (low + high) / 2
                if members[mid].arrival < arrival { low = mid + 1 } else { high = mid }
            }
            return low < members.count && members[low].arrival == arrival ? low : nil
        }

        /// Key, names, ranks and completeness again from the members (after one left).
        mutating func reorder() {
            let ordered = members.map(\.member)
            key = ordered[0].placement.group
            shards = ordered.map(\.name)
            ranked = RankedRuns()
            for member in ordered { ranked.add(member.name, member.placement) }
            (completeness, warnings) = Completeness.of(ranked, group: key)
        }
    }

    /// The group-by every placement was made under.
    public let groupBy: GroupBy
    private let options: MetricOptions
    private var arrivals = 0
    private var live: [ShardIdentity: (arrival: Int, group: RunKey)] = [:]
    private var states: [RunKey: GroupState] = [:]

    /// An empty set whose accumulators use `options` (top-k and bins).
    public init(groupBy: GroupBy, options: MetricOptions) {
        self.groupBy = groupBy
        self.options = options
    }

    /// Live shards.
    public var count: Int { live.count }

    /// Records the shard `name` arriving at `time` with its state `accumulator` (of this set's options); when a live
    /// shard has its identity, that one leaves (see ``remove(_:time:stateOf:)``) and is returned (the caller moves
    /// its record away). Costs O(1) for an arrival without a rank; one that states a rank recomputes its group's
    /// completeness from the ranks kept.
    @discardableResult
    public mutating func record(_ name: String, placement: ShardPlacement, accumulator: MetricAccumulator, time: Double,
                                stateOf: (String) -> MetricAccumulator?) -> Departure {
        let departure = remove(placement.identity, time: time, stateOf: stateOf)
        arrivals += 1
        live[placement.identity] = (arrivals, placement.group)
        // Taken out of the dictionary so that the changes below touch the only copy of its storage.
        var state = states.removeValue(forKey: placement.group) ?? GroupState(key: placement.group, sum: StateSum(options: options))
        state.join(Member(name: name, placement: placement, check: StateCheck(accumulator)), arrival: arrivals, time: time)
        // Exact sums make this merge the bits of merging every member again.
        state.sum.add(accumulator)
        if placement.shardIndex != nil || placement.numShards != nil {
            (state.completeness, state.warnings) = Completeness.of(state.ranked, group: state.key)
        }
        states[placement.group] = state
        return departure
    }

    /// Records, at start, the live shards `shards` (in arrival order, of distinct identities none of which is live)
    /// whose states the caller has merged by group into `sums` (every group of `shards`, nothing else); each group's
    /// completeness is computed once, not per arrival.
    public mutating func recordCounted(_ shards: some Sequence<(name: String, placement: ShardPlacement, check: StateCheck, time: Double)>,
                                       sums: [RunKey: StateSum]) {
        var touched: Set<RunKey> = []
        live.reserveCapacity(live.count + shards.underestimatedCount)
        for shard in shards {
            precondition(live[shard.placement.identity] == nil, "recordCounted: \(shard.name) has the identity of a live shard")
            arrivals += 1
            live[shard.placement.identity] = (arrivals, shard.placement.group)
            let group = shard.placement.group
            var state = states.removeValue(forKey: group) ?? GroupState(key: group, sum: StateSum(options: options))
            state.join(Member(name: shard.name, placement: shard.placement, check: shard.check), arrival: arrivals, time: shard.time)
            states[group] = state
            touched.insert(group)
        }
        for (group, sum) in sums {
            precondition(states[group] != nil, "recordCounted: a sum for a group without shards")
            states[group]!.sum.add(sum)
        }
        for group in touched {
            let state = states[group]!
            (states[group]!.completeness, states[group]!.warnings) = Completeness.of(state.ranked, group: state.key)
        }
    }

    /// The live shard of `identity`, if any.
    public func shard(_ identity: ShardIdentity) -> Member? {
        guard let (arrival, group) = live[identity], let state = states[group], let i = state.position(of: arrival) else { return nil }
        return state.members[i].member
    }

    /// Takes the live shard of `identity` out and returns it: its state, read back with `stateOf(name)`, is
    /// subtracted from its group's. When that gives nothing, or not the state merged (its ``StateCheck`` differs),
    /// the group is merged again from every remaining member's `stateOf`, and members whose state cannot be read
    /// back are taken out too (listed in `uncounted`), as a record unreadable at start is not counted.
    @discardableResult
    public mutating func remove(_ identity: ShardIdentity, time: Double, stateOf: (String) -> MetricAccumulator?) -> Departure {
        guard let (arrival, group) = live.removeValue(forKey: identity), var state = states.removeValue(forKey: group) else {
            return Departure()
        }
        guard let position = state.position(of: arrival) else {
            states[group] = state
            return Departure()
        }
        let member = state.members.remove(at: position).member
        var departure = Departure(superseded: member)
        guard !state.members.isEmpty else { return departure }
        state.updated = max(state.updated, time)
        if let old = readBack(member, stateOf: stateOf, into: state.sum) {
            state.sum.remove(old)
        } else {
            var sum = StateSum(options: options)
            state.members.removeAll { _, other in
                guard let value = readBack(other, stateOf: stateOf, into: sum) else {
                    live[other.placement.identity] = nil
                    departure.uncounted.append(other.name)
                    return true
                }
                sum.add(value)
                return false
            }
            state.sum = sum
            guard !state.members.isEmpty else { return departure }
        }
        state.reorder()
        states[group] = state
        return departure
    }

    /// `member`'s state from `stateOf`, when it is the one merged and `sum` can take it.
    private func readBack(_ member: Member, stateOf: (String) -> MetricAccumulator?, into sum: StateSum) -> MetricAccumulator? {
        guard let state = stateOf(member.name), sum.accepts(state), StateCheck(state) == member.check else { return nil }
        return state
    }

    /// The groups in the documented key order, each with the time it last changed, and the warnings their runs give.
    public func groups() -> (groups: [(group: RunGroup, updated: Double)], warnings: [NumShardsDisagreement]) {
        let ordered = states.values.sorted { $0.key < $1.key }
        return (ordered.map { ($0.report, $0.updated) }, ordered.flatMap(\.warnings))
    }

    /// The current report of the group `key`, if it has live shards.
    public func group(_ key: RunKey) -> RunGroup? { states[key]?.report }

    /// The merge of every live shard.
    public var total: MetricAccumulator {
        states.values.reduce(into: MetricAccumulator(options: options)) { total, state in total.merge(state.sum.accumulator) }
    }
}
