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
        let fromLive = live.record(name, placement: placement, accumulator: accumulator, time: Double(arrival))
        #expect(fromLive?.name == fromLedger?.superseded, "arrival \(arrival): the same shard is superseded")

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
