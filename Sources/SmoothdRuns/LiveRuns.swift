import SmoothdMetrics

/// The live shards of a result set that grows one shard at a time (`serve`): the newest shard of each identity,
/// in groups whose reports are kept up to date as shards arrive. The rules are ``RunLedger``'s (identity,
/// supersession, group order, completeness, exact merges; a group is built by the same ``RunGroup`` code), but a
/// superseded shard is dropped, so memory grows with the live shards only. A single-owner value: no I/O, no clock
/// (times are passed in).
public struct LiveRuns: Sendable {
    /// One group's live members (by arrival number) and its current report (their merged state included).
    private struct GroupState: Sendable {
        var members: [Int: RunLedger.Shard] = [:]
        var report: RunGroup?
        var warnings: [NumShardsDisagreement] = []
        /// The ranks its members state, kept as they arrive, so that completeness is not recomputed from every member.
        var ranked = RankedRuns()
        /// The latest time a member arrived or left (seconds since the epoch).
        var updated: Double = 0
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

    /// Records the shard `name` arriving at `time`; when a live shard has its identity, that one leaves and is
    /// returned (the caller moves its record away). Costs O(1) for an arrival without a rank; a shard that states one
    /// recomputes its group's completeness, and a supersession merges the group again from its members.
    @discardableResult
    public mutating func record(_ name: String, placement: ShardPlacement, accumulator: MetricAccumulator, time: Double) -> RunLedger.Shard? {
        let superseded = remove(placement.identity, time: time)
        arrivals += 1
        live[placement.identity] = (arrivals, placement.group)
        let shard = RunLedger.Shard(name: name, placement: placement, accumulator: accumulator)
        // Taken out of the dictionary so that the appends below change the only copy of its storage.
        var state = states.removeValue(forKey: placement.group) ?? GroupState()
        state.members[arrivals] = shard
        state.updated = max(state.updated, time)
        if state.report == nil {
            state = rebuilt(state)
        } else {
            // The newest member joins the report: exact sums make this merge the bits of merging every member
            // again, so an arrival costs O(1), not O(group), unless the shard states a rank.
            state.report!.shards.append(name)
            state.report!.accumulator.merge(accumulator)
            if placement.shardIndex != nil || placement.numShards != nil {
                state.ranked.add(shard)
                (state.report!.completeness, state.warnings) = Completeness.of(state.ranked, group: state.report!.key)
            }
        }
        states[placement.group] = state
        return superseded
    }

    /// The live shard of `identity`, if any.
    public func shard(_ identity: ShardIdentity) -> RunLedger.Shard? {
        guard let (arrival, group) = live[identity] else { return nil }
        return states[group]?.members[arrival]
    }

    /// Takes the live shard of `identity` out (its group is rebuilt from the members left), and returns it.
    @discardableResult
    public mutating func remove(_ identity: ShardIdentity, time: Double) -> RunLedger.Shard? {
        guard let (arrival, group) = live.removeValue(forKey: identity), var state = states[group],
              let shard = state.members.removeValue(forKey: arrival)
        else { return nil }
        if state.members.isEmpty {
            states[group] = nil
        } else {
            state.updated = max(state.updated, time)
            states[group] = rebuilt(state)
        }
        return shard
    }

    /// The groups in the documented key order, each with the time it last changed, and the warnings their runs give.
    public func groups() -> (groups: [(group: RunGroup, updated: Double)], warnings: [NumShardsDisagreement]) {
        let ordered = states.values.compactMap { state in state.report.map { (state: state, report: $0) } }
            .sorted { $0.report.key < $1.report.key }
        return (ordered.map { ($0.report, $0.state.updated) }, ordered.flatMap(\.state.warnings))
    }

    /// The current report of the group `key`, if it has live shards.
    public func group(_ key: RunKey) -> RunGroup? { states[key]?.report }

    /// The merge of every live shard.
    public var total: MetricAccumulator {
        states.values.reduce(into: MetricAccumulator(options: options)) { total, state in
            if let report = state.report { total.merge(report.accumulator) }
        }
    }

    /// `state` with its report built again from its members in arrival order.
    private func rebuilt(_ state: GroupState) -> GroupState {
        var state = state
        let members = state.members.sorted { $0.key < $1.key }.map(\.value)
        let (report, warnings) = RunGroup.of(members, options: options)
        state.report = report
        state.warnings = warnings
        state.ranked = RankedRuns()
        for member in members { state.ranked.add(member) }
        return state
    }
}
