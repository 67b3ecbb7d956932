import SmoothdJSON
import SmoothdMetrics
import SmoothdRuns
import Testing

private func meta(_ text: String) -> JSONValue { try! JSONValue.parse(text) }

private func placed(_ shard: String, _ metaText: String?, _ groupBy: GroupBy = .standard) throws -> ShardPlacement {
    try ShardPlacement.place(shard: shard, meta: metaText.map(meta), groupBy: groupBy).get()
}

/// An accumulator with `rows` rows of which `nonfinite` are non-finite (counts only, so merges are checkable).
private func state(rows: UInt64, nonfinite: UInt64 = 0) -> MetricAccumulator {
    var a = MetricAccumulator(options: MetricOptions())
    a.rows = rows
    a.nonfiniteRows = nonfinite
    a.ignoredRows = rows - nonfinite
    return a
}

@Test func groupByParsesNoneKeysAndRejectsBadLists() throws {
    #expect(try GroupBy(parsing: "none").keys == [])
    #expect(try GroupBy(parsing: " model , split").keys == ["model", "split"])
    #expect(try GroupBy(parsing: "model").runKeys == ["model", "checkpoint", "split"])
    #expect(try GroupBy(parsing: "split,step").runKeys == ["split", "step", "model", "checkpoint"])
    for bad in ["", "model,,split", "model,model", "none,model"] {
        #expect(throws: GroupByError.self, "\(bad)") { try GroupBy(parsing: bad) }
    }
}

@Test func valuesOrderNullFalseTrueNumbersStrings() {
    let ordered: [JSONValue] = [.null, .bool(false), .bool(true), .int(-3), .double(0.5), .int(1), .double(250), .int(1000),
                                .string("ckpt-1000"), .string("ckpt-250"), .string("final"), .string("é")]
    for (i, a) in ordered.enumerated() {
        for (j, b) in ordered.enumerated() {
            #expect(RunKey.compareValues(a, b) == (i < j ? -1 : i == j ? 0 : 1), "\(a) vs \(b)")
        }
    }
    #expect(RunKey.compareValues(.int(1), .double(1.0)) == 0)
    #expect(RunKey.compareValues(.int(Int64.max), .double(0x1p63)) == -1, "exact, not rounded to double")
    #expect(RunKey.compareValues(.int(9_007_199_254_740_993), .double(9_007_199_254_740_992)) == 1)
    // Code points, not Swift's canonical equivalence: precomposed é (U+00E9) is not e + U+0301.
    #expect(RunKey.compareValues(.string("\u{E9}"), .string("e\u{301}")) == 1)
    #expect(RunKey(keys: ["m"], meta: meta(#"{"m": "\u00e9"}"#)) != RunKey(keys: ["m"], meta: meta(#"{"m": "e\u0301"}"#)))
}

@Test func equalValuesAreOneKey() {
    let a = RunKey(keys: ["checkpoint"], meta: meta(#"{"checkpoint": 1}"#))
    let b = RunKey(keys: ["checkpoint"], meta: meta(#"{"checkpoint": 1.0}"#))
    let c = RunKey(keys: ["checkpoint"], meta: meta(#"{"checkpoint": true}"#))
    #expect(a == b && a.hashValue == b.hashValue)
    #expect(a != c)
    #expect(RunKey(keys: ["model"], meta: nil).json == .object([("model", .null)]))
}

@Test func nonScalarGroupKeyFailsOnlyWhenGroupedBy() throws {
    let m = #"{"model": "lm", "split": ["validation", "test"]}"#
    let error = try #require(ShardPlacement.place(shard: "x", meta: meta(m), groupBy: .standard).failure)
    #expect(error.rule == .groupKeyNotScalar && error.key == "split")
    #expect(error.reason.contains("array"))
    #expect(try placed("x", m, GroupBy(keys: ["model"])).identity == .name("x"))
    // Both broken: the group key is reported.
    let both = ShardPlacement.place(shard: "x", meta: meta(#"{"split": {}, "shard_index": -1}"#), groupBy: .standard).failure
    #expect(both?.rule == .groupKeyNotScalar && both?.reason.contains("object") == true)
}

@Test(arguments: [#"{"num_shards": 0}"#, #"{"num_shards": true}"#, #"{"num_shards": "2"}"#, #"{"num_shards": 1.5}"#,
                  #"{"shard_index": -1}"#, #"{"shard_index": 2, "num_shards": 2}"#, #"{"shard_index": null}"#,
                  #"{"num_shards": 2000000}"#])
func unusableRanksFail(_ text: String) throws {
    let error = try #require(ShardPlacement.place(shard: "x", meta: meta(text), groupBy: GroupBy(keys: [])).failure)
    #expect(error.rule == .badShardIndex, "\(text)")
    #expect(text.contains(error.key))
}

@Test func integralNumbersAreRanks() throws {
    let p = try placed("dir/r1.lshd.zst", #"{"model": "lm", "shard_index": 1.0, "num_shards": 2.0}"#)
    #expect(p.shardIndex == 1 && p.numShards == 2)
    #expect(try placed("dir/r1.lshd.zst", nil).identity == .name("r1.lshd.zst"))
}

@Test func laterShardOfOneIdentitySupersedesAndOnlyItCounts() throws {
    var ledger = RunLedger(groupBy: GroupBy(keys: ["model"]), options: MetricOptions())
    let r0 = #"{"model": "lm", "checkpoint": 100, "shard_index": 0, "num_shards": 2}"#
    #expect(ledger.record("a/r0", placement: try placed("a/r0", r0, ledger.groupBy), accumulator: state(rows: 10)) == nil)
    // Rank 0 of another checkpoint is another shard even though the group-by has no checkpoint.
    let other = #"{"model": "lm", "checkpoint": 250, "shard_index": 0, "num_shards": 2}"#
    #expect(ledger.record("a/c250", placement: try placed("a/c250", other, ledger.groupBy), accumulator: state(rows: 5)) == nil)
    let again = ledger.record("b/r0-rerun", placement: try placed("b/r0-rerun", r0, ledger.groupBy), accumulator: state(rows: 7))
    #expect(again?.superseded == "a/r0" && again?.by == "b/r0-rerun")
    #expect(ledger.liveShards.map(\.name) == ["a/c250", "b/r0-rerun"])
    #expect(ledger.total.rows == 12)
    // Same name in another directory, no ranks: a re-run by name.
    _ = ledger.record("x/plain", placement: try placed("x/plain", nil, ledger.groupBy), accumulator: state(rows: 3))
    let byName = ledger.record("y/plain", placement: try placed("y/plain", nil, ledger.groupBy), accumulator: state(rows: 4))
    #expect(byName?.identity == .name("plain"))
    #expect(ledger.supersessions.count == 2)
    // Names that differ only in Unicode normalization are two files, not a re-run.
    _ = ledger.record("x/\u{E9}", placement: try placed("x/\u{E9}", nil, ledger.groupBy), accumulator: state(rows: 0))
    #expect(ledger.record("x/e\u{301}", placement: try placed("x/e\u{301}", nil, ledger.groupBy), accumulator: state(rows: 0)) == nil)
    let (groups, warnings) = ledger.groups()
    #expect(groups.map(\.key.description) == [#"{"model":null}"#, #"{"model":"lm"}"#])
    #expect(groups.map(\.accumulator.rows) == [4, 12])
    #expect(groups[0].shards == ["y/plain", "x/\u{E9}", "x/e\u{301}"])
    #expect(warnings.isEmpty)
    let completeness = try #require(groups[1].completeness)
    #expect(completeness.expected == 4 && completeness.present == 2)
    #expect(completeness.missing.map(\.shardIndex) == [1, 1], "rank 1 of each checkpoint")
    #expect(completeness.json["missing"]?.arrayValue?.first?["run"]?["checkpoint"] == .int(100), "several runs: objects, in run order")
    #expect(groups[0].completeness == nil)
}

@Test func completenessUsesTheLargestNumShardsAndWarns() throws {
    var ledger = RunLedger(groupBy: .standard, options: MetricOptions())
    for (name, text) in [("r0", #"{"model": "m", "shard_index": 0, "num_shards": 2}"#),
                         ("r1", #"{"model": "m", "shard_index": 1, "num_shards": 3}"#),
                         ("r9", #"{"model": "m", "shard_index": 4}"#)] {
        ledger.record(name, placement: try placed(name, text), accumulator: state(rows: 1))
    }
    let (groups, warnings) = ledger.groups()
    let c = try #require(groups.first?.completeness)
    #expect(c.expected == 3 && c.present == 2 && !c.isComplete)
    #expect(c.json["missing"] == .array([.int(2)]), "one run: plain indexes; 4 is outside [0, 3)")
    #expect(warnings.count == 1)
    #expect(warnings.first?.shards.map(\.shard) == ["r0", "r1"])
    #expect(warnings.first?.numShardsUsed == 3)
}

@Test func groupShowsTheFirstShardsValue() throws {
    var ledger = RunLedger(groupBy: GroupBy(keys: ["checkpoint"]), options: MetricOptions())
    ledger.record("a", placement: try placed("a", #"{"checkpoint": 1.0}"#, ledger.groupBy), accumulator: state(rows: 1))
    ledger.record("b", placement: try placed("b", #"{"checkpoint": 1}"#, ledger.groupBy), accumulator: state(rows: 2))
    let (groups, _) = ledger.groups()
    #expect(groups.count == 1)
    #expect(groups[0].key.json == .object([("checkpoint", .double(1.0))]))
    #expect(groups[0].shards == ["a", "b"])
}

extension Result {
    var failure: Failure? {
        if case .failure(let f) = self { return f }
        return nil
    }
}
