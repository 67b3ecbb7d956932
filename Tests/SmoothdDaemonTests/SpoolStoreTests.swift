#if canImport(Glibc)
import Glibc
#endif
import Logging
import SmoothdJSON
import SmoothdMetrics
import SmoothdPipeline
import Testing

@testable import SmoothdDaemon

/// The claim/commit state machine, driven step by step (including simulated crashes between steps), with
/// `totals.json` checked against an independent merge of the records after every step.
@Suite("Spool state machine")
struct SpoolStoreTests {
    let options = MetricOptions()

    /// A daemon's start-up: open, reconcile, rebuild the ledger, rewrite totals.
    func start(_ dir: TempDirectory, deleteProcessed: Bool = false) throws -> (SpoolStore, TotalsFile, RecoveryReport) {
        let started = try startStoreReporting(dir, options: options, deleteProcessed: deleteProcessed)
        #expect(started.unreadable.isEmpty)
        return (started.store, started.totals, started.report)
    }

    func evaluator() -> ShardEvaluator { slotEvaluator(options) }

    @Test func totalsEqualTheMergeOfSummariesAfterEveryStep() throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let spool = dir.sub("spool"), out = dir.sub("out")
        let gate = CommitGate()
        var store: SpoolStore!
        var totals: TotalsFile!
        var report = RecoveryReport()
        // A (re)start: the previous store is released first, as when the process dies (its flock goes with it).
        func restart() throws {
            store = nil
            totals = nil
            (store, totals, report) = try start(dir)
        }
        try restart()
        #expect(report == RecoveryReport())
        try expectTotalsMatchRecords(output: out, options: options)
        #expect(try Files.json(out + "/totals.json")["shards_ok"] == .int(0))

        // 1. A valid shard: summary, then moved to done/.
        try Files.drop(ShardFactory.valid(rows: 300, seed: 1), named: "a.lshd.zst", in: spool)
        var item = try claim(store, "a.lshd.zst")
        #expect(item.instance == "a.lshd.zst")
        #expect(Files.exists(spool + "/.smoothd-work/a.lshd.zst") && !Files.exists(spool + "/a.lshd.zst"))
        guard case .succeeded(_, let record, _) = store.process(item, evaluator: evaluator(), options: options, totals: totals, gate: gate) else {
            Issue.record("a.lshd.zst not processed"); return
        }
        #expect(record.accumulator.rows == 300)
        #expect(Files.exists(spool + "/done/a.lshd.zst"))
        #expect(Files.list(spool + "/.smoothd-work").isEmpty)
        let summaryA = try Files.json(out + "/a.lshd.zst.summary.json")
        #expect(summaryA["shard"] == .string("a.lshd.zst"))
        #expect(summaryA["ok"] == .bool(true))
        #expect(summaryA["processed_at"]?.stringValue != nil)
        #expect(summaryA["processing_seconds"]?.doubleValue != nil)
        #expect(summaryA["compressed_bytes"]?.intValue ?? 0 > 0)
        #expect(summaryA["payload_bytes"]?.intValue ?? 0 > 0)
        try expectTotalsMatchRecords(output: out, options: options)

        // 2. An invalid shard: error record, moved to failed/.
        try Files.drop(ShardFactory.truncated(seed: 2), named: "b.lshd.zst", in: spool)
        item = try claim(store, "b.lshd.zst")
        guard case .failed(_, let failure) = store.process(item, evaluator: evaluator(), options: options, totals: totals, gate: gate) else {
            Issue.record("b.lshd.zst not quarantined"); return
        }
        #expect(failure.kind == .shard(.format(.truncated)))
        #expect(Files.exists(spool + "/failed/b.lshd.zst"))
        let errorB = try Files.json(out + "/b.lshd.zst.error.json")
        #expect(errorB["ok"] == .bool(false))
        #expect(errorB["error"]?["reason"]?.stringValue != nil)
        #expect(errorB["error"]?["offset"]?.intValue != nil)
        #expect(errorB["failed_at"]?.stringValue != nil)
        try expectTotalsMatchRecords(output: out, options: options)

        // 3. The name a.lshd.zst again, with other content: a re-run, recorded as a.lshd.zst~2; it supersedes the
        // first, whose summary moves (untouched) to OUTPUT/superseded/ and is no longer counted.
        let firstSummaryText = Files.text(out + "/a.lshd.zst.summary.json")
        try Files.drop(ShardFactory.valid(rows: 120, seed: 3), named: "a.lshd.zst", in: spool)
        item = try claim(store, "a.lshd.zst")
        #expect(item.instance == "a.lshd.zst~2")
        #expect(item.source == "a.lshd.zst")
        guard case .succeeded = store.process(item, evaluator: evaluator(), options: options, totals: totals, gate: gate) else {
            Issue.record("reused name not processed"); return
        }
        #expect(Files.text(out + "/superseded/a.lshd.zst.summary.json") == firstSummaryText)
        #expect(!Files.exists(out + "/a.lshd.zst.summary.json"))
        let summaryA2 = try Files.json(out + "/a.lshd.zst~2.summary.json")
        #expect(summaryA2["instance"] == .string("a.lshd.zst~2"))
        #expect(summaryA2["shard"] == .string("a.lshd.zst"))
        #expect(Files.exists(spool + "/done/a.lshd.zst") && Files.exists(spool + "/done/a.lshd.zst~2"))
        try expectTotalsMatchRecords(output: out, options: options)
        #expect(try Files.json(out + "/totals.json")["shards_ok"] == .int(1))

        // 4. Crash after the claim, before any record: the restart processes it again from the start.
        try Files.drop(ShardFactory.valid(rows: 50, seed: 4), named: "c.lshd.zst", in: spool)
        _ = try claim(store, "c.lshd.zst")
        try restart()  // as after kill -9
        #expect(report.reclaimed.map(\.instance) == ["c.lshd.zst"])
        #expect(report.completedCommits.isEmpty)
        try expectTotalsMatchRecords(output: out, options: options)
        guard case .succeeded = store.process(report.reclaimed[0], evaluator: evaluator(), options: options, totals: totals, gate: gate) else {
            Issue.record("reclaimed shard not processed"); return
        }
        try expectTotalsMatchRecords(output: out, options: options)

        // 5. Crash after the summary, before the move to done/ and before totals.json was rewritten:
        //    the restart completes the commit and writes no second summary.
        try Files.drop(ShardFactory.valid(rows: 70, seed: 5), named: "d.lshd.zst", in: spool)
        item = try claim(store, "d.lshd.zst")
        let totalsBefore = Files.text(out + "/totals.json")
        guard case .succeeded = store.process(item, evaluator: evaluator(), options: options, totals: totals, gate: gate) else {
            Issue.record("d.lshd.zst not processed"); return
        }
        #expect(rename(spool + "/done/d.lshd.zst", spool + "/.smoothd-work/d.lshd.zst") == 0)
        try Files.write(Array(totalsBefore.utf8), to: out + "/totals.json")
        try restart()
        #expect(report.completedCommits == ["d.lshd.zst"])
        #expect(report.reclaimed.isEmpty)
        #expect(Files.exists(spool + "/done/d.lshd.zst"))
        #expect(!Files.exists(out + "/d.lshd.zst~2.summary.json"))
        try expectTotalsMatchRecords(output: out, options: options)
        #expect(try Files.json(out + "/totals.json")["shards_ok"] == .int(3))

        // 6. A temporary file from an interrupted write is removed at start.
        try Files.write([1, 2, 3], to: out + "/.smoothd-e.lshd.zst.summary.json.tmp")
        try Files.write([1], to: out + "/.smoothd-totals.json.tmp")
        try restart()
        #expect(report.removedTemporaryFiles.sorted() == [".smoothd-e.lshd.zst.summary.json.tmp", ".smoothd-totals.json.tmp"])
        #expect(!Files.list(out).contains { $0.hasSuffix(".tmp") })
        try expectTotalsMatchRecords(output: out, options: options)

        // 7. Shutdown closed the gate: the shard is abandoned, stays claimed, nothing is recorded.
        try Files.drop(ShardFactory.valid(rows: 10, seed: 7), named: "g.lshd.zst", in: spool)
        item = try claim(store, "g.lshd.zst")
        let closed = CommitGate()
        closed.close()
        guard case .abandoned = store.process(item, evaluator: evaluator(), options: options, totals: totals, gate: closed) else {
            Issue.record("g.lshd.zst not abandoned"); return
        }
        #expect(Files.exists(spool + "/.smoothd-work/g.lshd.zst"))
        #expect(!Files.exists(out + "/g.lshd.zst.summary.json"))
        try expectTotalsMatchRecords(output: out, options: options)
        try restart()
        #expect(report.reclaimed.map(\.instance) == ["g.lshd.zst"])
        _ = store.process(report.reclaimed[0], evaluator: evaluator(), options: options, totals: totals, gate: gate)
        try expectTotalsMatchRecords(output: out, options: options)
        #expect(try Files.json(out + "/totals.json")["shards_ok"] == .int(4))
        #expect(try Files.json(out + "/totals.json")["shards_failed"] == .int(1))
    }

    @Test func onlyRegularFilesWithFinalNamesAreTouched() throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let spool = dir.sub("spool")
        let (store, _, _) = try start(dir)
        let bytes = try ShardFactory.valid(rows: 5, seed: 9)
        for name in [".hidden.lshd.zst", "x.lshd.zst.tmp", "y.lshd.zst.part", "notes.txt"] {
            try Files.write(bytes, to: spool + "/" + name)
        }
        try Files.write(bytes, to: dir.sub("elsewhere.lshd.zst"))
        #expect(symlink(dir.sub("elsewhere.lshd.zst"), spool + "/link.lshd.zst") == 0)
        #expect(mkdir(spool + "/dir.lshd.zst", 0o755) == 0)
        #expect(mkfifo(spool + "/fifo.lshd.zst", 0o644) == 0)
        try Files.drop(bytes, named: "real.lshd.zst", in: spool)
        #expect(try store.scanSpool().map(\.name) == ["real.lshd.zst"])
        #expect(try store.claim("link.lshd.zst") == .ignored)
        #expect(try store.claim("dir.lshd.zst") == .ignored)
        #expect(try store.claim("fifo.lshd.zst") == .ignored)
        #expect(try store.claim(".hidden.lshd.zst") == .ignored)
        #expect(try store.claim("missing.lshd.zst") == .vanished)
        for name in [".hidden.lshd.zst", "x.lshd.zst.tmp", "y.lshd.zst.part", "notes.txt", "link.lshd.zst", "dir.lshd.zst", "fifo.lshd.zst"] {
            #expect(Files.exists(spool + "/" + name), "\(name) must be left alone")
        }
    }

    @Test func deleteProcessedRemovesShardsButStillDetectsReuse() throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let spool = dir.sub("spool"), out = dir.sub("out")
        let (store, totals, _) = try start(dir, deleteProcessed: true)
        let gate = CommitGate()
        for round in 1...2 {
            try Files.drop(ShardFactory.valid(rows: 20, seed: UInt64(round)), named: "r.lshd.zst", in: spool)
            let item = try claim(store, "r.lshd.zst")
            #expect(item.instance == (round == 1 ? "r.lshd.zst" : "r.lshd.zst~2"))
            guard case .succeeded = store.process(item, evaluator: evaluator(), options: options, totals: totals, gate: gate) else {
                Issue.record("not processed"); return
            }
        }
        #expect(!Files.exists(spool + "/done"))
        #expect(Files.list(spool).filter { !$0.hasPrefix(".") } == ["failed"])
        #expect(Files.exists(out + "/superseded/r.lshd.zst.summary.json") && Files.exists(out + "/r.lshd.zst~2.summary.json"))
        #expect(try Files.json(out + "/totals.json")["shards_ok"] == .int(1), "the re-run supersedes the first")
        try expectTotalsMatchRecords(output: out, options: options)
    }

    @Test func aSecondDaemonOnTheSameSpoolIsRefused() throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let first = try SpoolStore(spoolPath: dir.sub("spool"), outputPath: dir.sub("out"), deleteProcessed: false)
        #expect(throws: SpoolLockedError.self) {
            _ = try SpoolStore(spoolPath: dir.sub("spool"), outputPath: dir.sub("out2"), deleteProcessed: false)
        }
        _ = first
    }

    @Test func summariesWithOtherOptionsAreRefusedNotMerged() throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let (store, totals, _) = try start(dir)
        try Files.drop(ShardFactory.valid(rows: 20, seed: 1), named: "k.lshd.zst", in: dir.sub("spool"))
        _ = store.process(try claim(store, "k.lshd.zst"), evaluator: evaluator(), options: options, totals: totals, gate: CommitGate())
        #expect(throws: TotalsMismatchError.self) {
            _ = try store.rebuildLedger(options: MetricOptions(topK: 3))
        }
    }
}
