import SmoothdJSON
import SmoothdMetrics
import SmoothdRuns
import SmoothdTesting
import Testing

/// `LiveRuns` (serve's incremental groups) against `RunLedger` (eval's, checked against the NumPy reference by
/// the CLI tests) over the same arrival sequences: random ranks, re-runs of ranks and of names, two checkpoints,
/// disagreeing num_shards. After every arrival the groups, their members, completeness, metric states and the
/// warnings are the same.
@Test(arguments: [1, 2, 3, 4])
func liveRunsAgreeWithTheLedgerAfterEveryArrival(seed: UInt64) throws {
    var generator = SplitMix(seed: seed)
    let options = MetricOptions()
    let groupBy = GroupBy.standard
    var ledger = RunLedger(groupBy: groupBy, options: options)
    var live = LiveRuns(groupBy: groupBy, options: options)
    var records: [String: MetricAccumulator] = [:]  // what a record read back gives
    for arrival in 0..<120 {
        let checkpoint = generator.next() % 3
        let ranked = generator.next() % 4 != 0
        let numShards = 3 + generator.next() % 2  // 3 or 4: runs that disagree
        let metaText = ranked
            ? #"{"model": "m", "checkpoint": \#(checkpoint), "split": "v", "shard_index": \#(generator.next() % 3), "num_shards": \#(numShards)}"#
            : #"{"model": "m", "checkpoint": \#(checkpoint), "split": "v"}"#
        // Unranked shards reuse a few names (re-runs by name); ranked ones always get a new name.
        let name = ranked ? "dir/r\(arrival).lshd.zst" : "dir\(arrival % 2)/plain\(generator.next() % 4).lshd.zst"
        let placement = try ShardPlacement.place(shard: name, meta: try JSONValue.parse(metaText), groupBy: groupBy).get()
        var accumulator = MetricAccumulator(options: options)
        accumulator.rows = 1 + generator.next() % 50
        accumulator.countedRows = accumulator.rows
        accumulator.correct = generator.next() % (accumulator.countedRows + 1)
        accumulator.nllSum.add(Double(generator.next() % 1000) / 7)

        let fromLedger = ledger.record(name, placement: placement, accumulator: accumulator)
        let fromLive = live.record(name, placement: placement, accumulator: accumulator, time: Double(arrival)) { records[$0] }
        records[name] = accumulator
        #expect(fromLive.superseded?.name == fromLedger?.superseded, "arrival \(arrival): the same shard is superseded")
        #expect(fromLive.uncounted.isEmpty)

        let (expected, expectedWarnings) = ledger.groups()
        let (groups, warnings) = live.groups()
        #expect(groups.map(\.group.key) == expected.map(\.key), "arrival \(arrival): groups and their order")
        for (got, want) in zip(groups.map(\.group), expected) {
            #expect(got.shards == want.shards, "arrival \(arrival) \(want.key): members in arrival order")
            #expect(got.completeness == want.completeness, "arrival \(arrival) \(want.key)")
            #expect(got.accumulator == want.accumulator, "arrival \(arrival) \(want.key): the exact merge")
        }
        #expect(warnings == expectedWarnings, "arrival \(arrival)")
        #expect(live.count == ledger.liveShards.count)
        #expect(live.total == ledger.total)
    }
}

/// A state of 1–30 random rows with every part a supersession must take out exactly: bins, the confidence histogram
/// (dense as rows fill it, sparse when read from a state, or missing as in a version-1 state), the temperature sweep,
/// bootstrap replicates, and now and then an NLL large enough for the exact sum's wide part.
private func randomState(_ generator: inout SplitMix, options: MetricOptions, read: Bool = false) throws -> MetricAccumulator {
    var state = MetricAccumulator(options: options)
    for row in 0..<(1 + generator.next() % 30) {
        let confidence = generator.unit()
        let nll = generator.next() % 9 == 0 ? 0x1p45 * generator.unit() : 5 * generator.unit()
        let statistics = RowStatistics(isFinite: true, nll: nll, uniformTerm: generator.unit(), othersTerm: generator.unit(),
                                       entropy: generator.unit(), confidence: confidence, brier: generator.unit(), rank: Int(generator.next() % 7))
        state.add(statistics)
        state.bootstrap?.add(statistics, rowKey: PoissonStream.rowKey(seed: 7, row: generator.next() % 1000 + row), topK: options.topK)
        let swept = options.allTemperatures.map { _ in
            TemperatureRowStatistics(nll: 3 * generator.unit(), uniformTerm: generator.unit(), othersTerm: generator.unit(), confidence: generator.unit(),
                                     entropy: generator.unit(), brier: generator.unit(), slope: generator.unit() - 0.5, curvature: generator.unit())
        }
        swept.withUnsafeBufferPointer { state.addTemperatures($0.baseAddress!, correct: statistics.rank == 0) }
    }
    switch generator.next() % 6 {
    case 0: state.confidenceHistogram = nil
    case 1, 2: state = try MetricAccumulator(jsonState: try JSONValue.parse(state.jsonState().serialized()))
    default: if read { state = try MetricAccumulator(jsonState: try JSONValue.parse(state.jsonState().serialized())) }
    }
    return state
}

/// Supersessions take the old shard's state (read back, not kept) out of its group exactly: after every arrival each
/// group's state is the merge of its live members' states, as `RunLedger`'s batch path merges them, to the bit of
/// the written state. Re-runs of ranks and of names, members without a histogram, wide sums; in one arrival of
/// eight the record read back is not the state merged, so the group is merged again from its members. With an even
/// seed every state is read from its JSON (sparse histograms, as the daemon's are).
@Test(arguments: [5, 6, 7, 8])
func liveRunsSubtractSupersededStatesExactly(seed: UInt64) throws {
    var generator = SplitMix(seed: seed)
    let options = MetricOptions(temperatures: [0.5, 2], bootstrapReplicates: 3)
    let groupBy = GroupBy.standard
    var ledger = RunLedger(groupBy: groupBy, options: options)
    var live = LiveRuns(groupBy: groupBy, options: options)
    var records: [String: MetricAccumulator] = [:]
    var regrouped = 0
    for arrival in 0..<150 {
        let ranked = generator.next() % 3 != 0
        let metaText = ranked
            ? #"{"model": "m", "checkpoint": \#(generator.next() % 2), "split": "v", "shard_index": \#(generator.next() % 4), "num_shards": 4}"#
            : #"{"model": "m", "checkpoint": 9, "split": "v"}"#
        let name = ranked ? "dir/r\(arrival).lshd.zst" : "dir\(arrival % 2)/plain\(generator.next() % 3).lshd.zst"
        let placement = try ShardPlacement.place(shard: name, meta: try JSONValue.parse(metaText), groupBy: groupBy).get()
        let state = try randomState(&generator, options: options, read: seed % 2 == 0)
        let changed = generator.next() % 8 == 0
        let expected = ledger.record(name, placement: placement, accumulator: state)
        let departure = live.record(name, placement: placement, accumulator: state, time: Double(arrival)) { read in
            guard changed, read == expected?.superseded else { return records[read] }
            regrouped += 1
            var other = records[read]!
            other.rows += 1
            return other
        }
        records[name] = state
        #expect(departure.superseded?.name == expected?.superseded, "arrival \(arrival)")
        #expect(departure.uncounted.isEmpty, "arrival \(arrival)")
        let (want, _) = ledger.groups()
        let got = live.groups().groups.map(\.group)
        #expect(got.map(\.key) == want.map(\.key), "arrival \(arrival)")
        for (g, w) in zip(got, want) {
            #expect(g.shards == w.shards && g.completeness == w.completeness, "arrival \(arrival) \(w.key)")
            #expect(g.accumulator == w.accumulator, "arrival \(arrival) \(w.key): the merge of the live members")
            #expect(g.accumulator.jsonState().serialized() == w.accumulator.jsonState().serialized(), "arrival \(arrival) \(w.key): the same bits")
        }
        #expect(live.total == ledger.total)
    }
    #expect(ledger.supersessions.count > 30 && regrouped > 0, "the sequence exercises supersessions (\(ledger.supersessions.count)) and regroups (\(regrouped))")
}

/// A member whose record cannot be read back when its group must be merged again is no longer counted (as at start);
/// the group is the merge of the members still counted.
@Test
func liveRunsDropAMemberThatCannotBeReadBack() throws {
    let options = MetricOptions()
    var live = LiveRuns(groupBy: .standard, options: options)
    var ledger = RunLedger(groupBy: .standard, options: options)
    var generator = SplitMix(seed: 11)
    var records: [String: MetricAccumulator] = [:]
    for name in ["a/x.lshd.zst", "a/y.lshd.zst", "a/z.lshd.zst"] {
        let placement = try ShardPlacement.place(shard: name, meta: try JSONValue.parse(#"{"model": "m"}"#), groupBy: .standard).get()
        let state = try randomState(&generator, options: options)
        records[name] = state
        live.record(name, placement: placement, accumulator: state, time: 0) { records[$0] }
        if name != "a/y.lshd.zst" { ledger.record(name, placement: placement, accumulator: state) }
    }
    let rerun = try ShardPlacement.place(shard: "b/x.lshd.zst", meta: try JSONValue.parse(#"{"model": "m"}"#), groupBy: .standard).get()
    let state = try randomState(&generator, options: options)
    ledger.record("b/x.lshd.zst", placement: rerun, accumulator: state)
    // x's record reads back changed and y's not at all: the group is merged again from z's, then b/x joins.
    let departure = live.record("b/x.lshd.zst", placement: rerun, accumulator: state, time: 1) { name in
        name == "a/x.lshd.zst" ? MetricAccumulator(options: options) : name == "a/y.lshd.zst" ? nil : records[name]
    }
    #expect(departure.superseded?.name == "a/x.lshd.zst" && departure.uncounted == ["a/y.lshd.zst"])
    let got = live.groups().groups.map(\.group), want = ledger.groups().groups
    #expect(got.count == 1 && want.count == 1 && got[0].shards == ["a/z.lshd.zst", "b/x.lshd.zst"] && got[0].shards == want[0].shards)
    #expect(got[0].accumulator == want[0].accumulator && live.count == 2)
}
