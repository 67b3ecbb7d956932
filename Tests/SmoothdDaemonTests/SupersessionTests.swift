#if canImport(Glibc)
import Glibc
#endif
import SmoothdJSON
import SmoothdMetrics
import SmoothdPipeline
import Testing

@testable import SmoothdDaemon

/// Re-runs in the spool: claiming a reused name is O(1), and a supersession is crash-safe (the new record is
/// written first, the old one moved after; a start finishes a move that did not happen).
@Suite("Supersession")
struct SupersessionTests {
    let options = MetricOptions()

    /// A name used many times: each claim checks one instance name (two for the first reuse, which has no
    /// ordinal yet), not every earlier `NAME~k` as the probe loop used to (n(n+1)/2 probes in all); and a
    /// restart finds the highest ordinal with one listing, not by probing.
    @Test func claimingAReusedNameMakesConstantProbes() throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let spool = dir.sub("spool")
        var store: SpoolStore? = try startStore(dir, options: options).0
        let uses = 400
        for use in 1...uses {
            try Files.drop(Array("x".utf8), named: "same.lshd.zst", in: spool)
            let item = try claim(store!, "same.lshd.zst")
            #expect(item.instance == (use == 1 ? "same.lshd.zst" : "same.lshd.zst~\(use)"))
            try store!.finishCommit(item, succeeded: true)
        }
        #expect(store!.claimProbes == uses + 1, "one probe per claim, two for the first reuse (the probe loop made \(uses * (uses + 1) / 2))")
        store = nil
        store = try SpoolStore(spoolPath: spool, outputPath: dir.sub("out"), deleteProcessed: false)
        try Files.drop(Array("x".utf8), named: "same.lshd.zst", in: spool)
        #expect(try claim(store!, "same.lshd.zst").instance == "same.lshd.zst~\(uses + 1)")
        #expect(store!.claimProbes == 1, "after a restart too")
    }

    /// The move of the superseded summary fails after the new one is written (as a crash there would leave it):
    /// the totals count only the new one at once; the next start moves the old one to superseded/ and counts
    /// exactly one record for the identity.
    @Test func aSupersessionInterruptedAfterTheNewRecordIsFinishedAtStart() throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let spool = dir.sub("spool"), out = dir.sub("out")
        let faults = FaultInjector()
        var (store, totals): (SpoolStore?, TotalsFile?) = try startStore(dir, faults: faults, options: options)
        let meta = #"{"model": "m", "checkpoint": 7, "split": "validation", "shard_index": 0, "num_shards": 1}"#
        try Files.drop(ShardFactory.withMeta(meta, rows: 5), named: "rank0.lshd.zst", in: spool)
        guard case .succeeded = store!.process(try claim(store!, "rank0.lshd.zst"), evaluator: slotEvaluator(options), options: options,
                                               totals: totals!, gate: CommitGate())
        else { Issue.record("first run not processed"); return }
        let firstText = Files.text(out + "/rank0.lshd.zst.summary.json")

        faults.fail(.rename, with: EIO, matching: "/superseded/")
        try Files.drop(ShardFactory.withMeta(meta, rows: 9), named: "rank0-again.lshd.zst", in: spool)
        let result = store!.process(try claim(store!, "rank0-again.lshd.zst"), evaluator: slotEvaluator(options), options: options,
                                    totals: totals!, gate: CommitGate())
        guard case .retry = result else { Issue.record("expected a retry, got \(result)"); return }
        #expect(Files.exists(out + "/rank0.lshd.zst.summary.json") && Files.exists(out + "/rank0-again.lshd.zst.summary.json"))
        var counted = try Files.json(out + "/totals.json")
        #expect(counted["shards_ok"] == .int(1) && counted["rows"] == .int(9), "only the re-run is counted, even before the move")

        // The crash: a new start on the same directories.
        (store, totals) = (nil, nil)
        faults.clear()
        let started = try startStoreReporting(dir, options: options)
        #expect(started.report.completedCommits == ["rank0-again.lshd.zst"])
        #expect(!Files.exists(out + "/rank0.lshd.zst.summary.json"))
        #expect(Files.text(out + "/superseded/rank0.lshd.zst.summary.json") == firstText, "kept, untouched")
        counted = try Files.json(out + "/totals.json")
        #expect(counted["shards_ok"] == .int(1) && counted["rows"] == .int(9))
        #expect(counted["groups"]?.arrayValue?.count == 1)
        #expect(counted["groups"]?.arrayValue?.first?["completeness"] == .object([("expected", .int(1)), ("present", .int(1)), ("missing", .array([]))]))
        try expectTotalsMatchRecords(output: out, options: options)
    }
}
