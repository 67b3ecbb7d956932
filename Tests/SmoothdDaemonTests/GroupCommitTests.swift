#if canImport(Glibc)
import Glibc
#endif
import Foundation
import SmoothdJSON
import SmoothdMetrics
import SmoothdPipeline
import Synchronization
import Testing

@testable import SmoothdDaemon

/// Group commit (`SpoolStore.commitBatch`): a batch of several shards stopped dead after each of its steps (as a
/// `kill -9` there would leave it), then a new start, loses and duplicates nothing; I/O errors inside a batch
/// retry only what they must. Expected counts come from the shards the tests write (their row counts).
@Suite("Group commit")
struct GroupCommitTests {
    let options = MetricOptions()
    /// Valid shards of these row counts, and one invalid shard.
    let rows = [10, 20, 30, 40]
    var valid: [String] { rows.indices.map { "batch-\($0).lshd.zst" } }
    let invalid = "junk.lshd.zst"

    /// Drops the shards, claims them and prepares their commits (records under temporary names).
    func prepareBatch(_ dir: TempDirectory, _ store: SpoolStore, _ totals: TotalsFile) throws -> [PreparedCommit] {
        for (name, rows) in zip(valid, rows) {
            try Files.drop(try ShardFactory.valid(rows: rows, seed: UInt64(rows)), named: name, in: dir.sub("spool"))
        }
        try Files.drop(ShardFactory.garbage(), named: invalid, in: dir.sub("spool"))
        return try (valid + [invalid]).map { name in
            let item = try claim(store, name)
            guard case .commit(let commit) = store.prepare(item, evaluator: slotEvaluator(options), options: options, totals: totals,
                                                           gate: CommitGate())
            else { throw FileSystemError(operation: "prepare (nothing to commit)", path: name, errorNumber: EINVAL) }
            return commit
        }
    }

    /// Exactly one record per shard, of the right kind; every shard in done/ or failed/; nothing claimed or
    /// half-written; totals.json counts each shard once and equals the merge of the summaries.
    func expectEachShardOnce(_ dir: TempDirectory, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let out = dir.sub("out"), spool = dir.sub("spool")
        let records = Files.list(out).filter { $0.hasSuffix(".summary.json") || $0.hasSuffix(".error.json") }.sorted()
        #expect(records == (valid.map(ShardName.summaryFile) + [ShardName.errorFile(invalid)]).sorted(), sourceLocation: sourceLocation)
        #expect(Files.list(spool + "/done").sorted() == valid.sorted(), sourceLocation: sourceLocation)
        #expect(Files.list(spool + "/failed") == [invalid], sourceLocation: sourceLocation)
        #expect(Files.list(spool + "/.smoothd-work").filter { !$0.hasPrefix(".") }.isEmpty, "nothing left claimed", sourceLocation: sourceLocation)
        #expect(Files.leftovers(out).isEmpty, "no temporary file left", sourceLocation: sourceLocation)
        let totals = try Files.json(out + "/totals.json")
        #expect(totals["shards_ok"] == .int(Int64(valid.count)) && totals["shards_failed"] == .int(1), "\(totals)", sourceLocation: sourceLocation)
        #expect(totals["rows"] == .int(Int64(rows.reduce(0, +))), sourceLocation: sourceLocation)
        try expectTotalsMatchRecords(output: out, options: options, sourceLocation: sourceLocation)
    }

    /// One batch of five shards commits them all: four summaries, one error record, every shard moved.
    @Test func aBatchCommitsEveryShardOnce() throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let (store, totals) = try startStore(dir, options: options)
        let results = store.commitBatch(try prepareBatch(dir, store, totals))
        #expect(results.count == 5)
        for result in results.prefix(4) {
            guard case .succeeded(let item, let record, _) = result else { Issue.record("not committed: \(result)"); continue }
            #expect(record.entry.summary.accumulator.rows == UInt64(rows[valid.firstIndex(of: item.instance)!]))
        }
        guard case .failed(let item, _) = results[4] else { Issue.record("not quarantined: \(results[4])"); return }
        #expect(item.instance == invalid)
        try expectEachShardOnce(dir)
        #expect(totals.snapshot.shardsOK == 4 && totals.snapshot.shardsFailed == 1)
    }

    /// The committer batches what is submitted while a batch runs and reports each shard once.
    @Test func theCommitterReportsEveryShardOnce() throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let (store, totals) = try startStore(dir, options: options)
        let commits = try prepareBatch(dir, store, totals)
        let reported = Mutex<[String]>([])
        let all = DispatchGroup()
        for commit in commits {
            all.enter()
            store.committer.submit(commit, in: store) { result in
                reported.withLock { $0.append(result.item.instance) }
                all.leave()
            }
        }
        #expect(all.wait(timeout: .now() + 60) == .success)
        #expect(reported.withLock { $0 }.sorted() == (valid + [invalid]).sorted())
        let counts = store.committer.counts
        #expect(counts.shards == 5 && counts.batches >= 1 && counts.batches <= 5)
        try expectEachShardOnce(dir)
    }

    /// A batch stopped dead after each step, then a new start (recovery, rebuilt totals) and processing what it
    /// re-queued: every shard ends with exactly one record, counted once.
    @Test(arguments: GroupCommitStep.allCases)
    func aCrashAfterAnyStepLosesAndDuplicatesNothing(step: GroupCommitStep) throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let faults = FaultInjector()
        do {
            let (store, totals) = try startStore(dir, faults: faults, options: options)
            faults.crash(after: step)
            let results = store.commitBatch(try prepareBatch(dir, store, totals))
            for result in results {
                guard case .abandoned = result else { Issue.record("\(step): reported although it crashed: \(result)"); continue }
            }
        }  // the crashed daemon's descriptors (and its locks) are gone

        let started = try startStoreReporting(dir, options: options)
        let recordsInPlace = step != .recordsSynced
        let claimedAtCrash = step != .shardsMoved
        #expect(started.report.completedCommits.count == (recordsInPlace && claimedAtCrash ? 5 : 0), "\(step): \(started.report)")
        #expect(started.report.reclaimed.count == (recordsInPlace ? 0 : 5), "\(step): \(started.report)")
        #expect(started.report.removedTemporaryFiles.count == (recordsInPlace ? 0 : 5), "\(step): \(started.report)")
        for item in started.report.reclaimed {
            let result = started.store.process(item, evaluator: slotEvaluator(options), options: options, totals: started.totals, gate: CommitGate())
            switch result {
            case .succeeded, .failed: break
            default: Issue.record("\(step): re-processing \(item.instance) gave \(result)")
            }
        }
        try expectEachShardOnce(dir)
    }

    /// A failing `fsync` of one record retries that shard alone; a failing `fsync` of the output directory
    /// retries the whole batch, whose next attempts finish each commit and count each shard once.
    @Test func ioErrorsInsideABatch() throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let faults = FaultInjector()
        let (store, totals) = try startStore(dir, faults: faults, options: options)
        let commits = try prepareBatch(dir, store, totals)
        func again(_ item: WorkItem) -> ClaimDisposition {
            store.process(item, evaluator: slotEvaluator(options), options: options, totals: totals, gate: CommitGate())
        }

        faults.fail(.fileSync, with: EIO, matching: valid[1], times: 1)
        var results = store.commitBatch(Array(commits.prefix(3)))
        guard case .retry(let lone, let error) = results[1] else { Issue.record("not retried: \(results[1])"); return }
        #expect(error.contains("Input/output error"))
        // Neither its record nor its temporary file (the two commits not yet run keep theirs).
        let failedRecord = ShardName.summaryFile(valid[1])
        #expect(!Files.exists(dir.sub("out") + "/" + failedRecord))
        #expect(!Files.exists(dir.sub("out") + "/" + DirectoryHandle.temporaryName(for: failedRecord)))
        #expect(Files.leftovers(dir.sub("out")).count == 2)
        for result in [results[0], results[2]] {
            guard case .succeeded = result else { Issue.record("the others must commit: \(result)"); return }
        }
        guard case .succeeded = again(lone) else { Issue.record("not committed on its retry"); return }

        faults.fail(.directorySync, with: EIO, matching: dir.sub("out"), times: 1)
        results = store.commitBatch(Array(commits.suffix(2)))
        for result in results {
            guard case .retry = result else { Issue.record("a failed directory fsync must retry the batch: \(result)"); return }
            guard case .completedEarlierCommit = again(result.item) else { Issue.record("not completed: \(result.item.instance)"); return }
        }
        try expectEachShardOnce(dir)
        #expect(totals.snapshot.shardsOK == 4 && totals.snapshot.shardsFailed == 1)
    }
}
