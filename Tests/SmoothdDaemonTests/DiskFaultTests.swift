#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import SmoothdJSON
import SmoothdMetrics
import SmoothdPipeline
import Testing

@testable import SmoothdDaemon

/// Disk faults injected through the file-writing seam: every failure leaves no half-written record, loses no
/// shard (it stays claimed), counts nothing twice, and the next attempt commits exactly once.
@Suite("Disk faults (seam)")
struct DiskFaultSeamTests {
    let options = MetricOptions()

    struct Fixture {
        let dir: TempDirectory
        let faults: FaultInjector
        let store: SpoolStore
        let totals: TotalsFile
        var spool: String { dir.sub("spool") }
        var out: String { dir.sub("out") }
        var work: String { dir.sub("spool") + "/.smoothd-work" }
    }

    func fixture() throws -> Fixture {
        let dir = TempDirectory()
        let faults = FaultInjector()
        let (store, totals) = try startStore(dir, faults: faults, options: options)
        return Fixture(dir: dir, faults: faults, store: store, totals: totals)
    }

    func evaluator() -> ShardEvaluator { slotEvaluator(options) }

    func process(_ f: Fixture, _ item: WorkItem) -> ClaimDisposition {
        f.store.process(item, evaluator: evaluator(), options: options, totals: f.totals, gate: CommitGate())
    }

    func drop(_ f: Fixture, _ name: String, rows: Int = 50) throws -> WorkItem {
        try Files.drop(try ShardFactory.valid(rows: rows, seed: UInt64(name.utf8.count)), named: name, in: f.spool)
        guard case .claimed(let item) = try f.store.claim(name) else { throw FileSystemError(operation: "claim", path: name, errorNumber: ENOENT) }
        return item
    }

    /// Nothing half-written: no temporary file, no record for `instance`; the shard still claimed.
    func expectNothingCommitted(_ f: Fixture, _ instance: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let outputs = Files.list(f.out)
        #expect(Files.leftovers(f.out).isEmpty, "temporary file left: \(outputs)", sourceLocation: sourceLocation)
        #expect(!outputs.contains(ShardName.summaryFile(instance)), sourceLocation: sourceLocation)
        #expect(Files.exists(f.work + "/" + instance), "the shard must stay claimed", sourceLocation: sourceLocation)
        #expect(!Files.exists(f.spool + "/done/" + instance), sourceLocation: sourceLocation)
    }

    /// The output filesystem is full (`ENOSPC` from `write`, after part of the data landed), then has room again.
    @Test func outputFullThenRoomAgain() throws {
        let f = try fixture()
        defer { f.dir.remove() }
        let item = try drop(f, "full.lshd.zst")
        f.faults.fail(.write, with: ENOSPC, matching: "summary")
        for _ in 0..<3 {
            guard case .retry(_, let error) = process(f, item) else { Issue.record("not retried"); return }
            #expect(error.contains("No space left on device"))
            try expectNothingCommitted(f, item.instance)
            try expectTotalsMatchRecords(output: f.out, options: options)
        }
        f.faults.clear()
        guard case .succeeded = process(f, item) else { Issue.record("not committed once space returned"); return }
        #expect(Files.list(f.out).filter { $0.hasSuffix(".summary.json") } == ["full.lshd.zst.summary.json"])
        #expect(Files.exists(f.spool + "/done/full.lshd.zst"))
        try expectTotalsMatchRecords(output: f.out, options: options)
    }

    /// The output directory becomes read-only (`EROFS` when the temporary file is created, or at the rename).
    @Test func outputReadOnlyThenWritable() throws {
        let f = try fixture()
        defer { f.dir.remove() }
        let item = try drop(f, "ro.lshd.zst")
        for operation in [FaultInjector.Operation.create, .rename] {
            f.faults.fail(operation, with: EROFS, matching: "ro.lshd.zst.summary")
            guard case .retry(_, let error) = process(f, item) else { Issue.record("\(operation): not retried"); return }
            #expect(error.contains("Read-only file system"))
            try expectNothingCommitted(f, item.instance)
            f.faults.clear()
        }
        guard case .succeeded = process(f, item) else { Issue.record("not committed once writable"); return }
        try expectTotalsMatchRecords(output: f.out, options: options)
        #expect(try Files.json(f.out + "/totals.json")["shards_ok"] == .int(1))
    }

    /// `fsync` of the record fails (`EIO`): an error, never ignored; the next attempt writes a new file.
    @Test func failingFileFsyncIsAnError() throws {
        let f = try fixture()
        defer { f.dir.remove() }
        let item = try drop(f, "sync.lshd.zst")
        f.faults.fail(.fileSync, with: EIO, matching: "summary", times: 1)
        guard case .retry(_, let error) = process(f, item) else { Issue.record("fsync failure ignored"); return }
        #expect(error.hasPrefix("fsync ") && error.contains("Input/output error"), "\(error)")
        #expect(f.faults.injected(.fileSync) == 1)
        try expectNothingCommitted(f, item.instance)
        guard case .succeeded = process(f, item) else { Issue.record("not committed"); return }
        try expectTotalsMatchRecords(output: f.out, options: options)
    }

    /// `fsync` of the output directory fails after the record was renamed into place: the commit is not
    /// considered done. The next attempt finds the record, writes it again durably (a failed fsync is never
    /// trusted), counts it once in the totals, and finishes the move.
    @Test func failingDirectoryFsyncAfterTheRenameIsAnError() throws {
        let f = try fixture()
        defer { f.dir.remove() }
        let item = try drop(f, "dirsync.lshd.zst")
        f.faults.fail(.directorySync, with: EIO, matching: f.out, times: 1)
        guard case .retry(_, let error) = process(f, item) else { Issue.record("directory fsync failure ignored"); return }
        #expect(error.contains("Input/output error"))
        #expect(Files.exists(f.work + "/dirsync.lshd.zst"), "still claimed")
        #expect(!Files.exists(f.spool + "/done/dirsync.lshd.zst"))
        guard case .completedEarlierCommit(_, succeeded: true) = process(f, item) else { Issue.record("not completed"); return }
        #expect(!f.totals.hasRecorded("dirsync.lshd.zst"), "forgotten once the commit finished")
        try expectTotalsMatchRecords(output: f.out, options: options)
        #expect(try Files.json(f.out + "/totals.json")["shards_ok"] == .int(1))
        #expect(Files.exists(f.spool + "/done/dirsync.lshd.zst"))
        #expect(Files.leftovers(f.out).isEmpty)
    }

    /// The record and totals are committed but moving the shard to `done/` fails (its directory fsync): the
    /// next attempt only finishes the move; the totals do not count the shard twice.
    @Test func failingMoveAfterTheRecordCountsOnce() throws {
        let f = try fixture()
        defer { f.dir.remove() }
        let item = try drop(f, "move.lshd.zst")
        f.faults.fail(.directorySync, with: EIO, matching: "/done", times: 1)
        let first = process(f, item)
        guard case .retry = first else { Issue.record("not retried: \(first)"); return }
        #expect(Files.exists(f.out + "/move.lshd.zst.summary.json"))
        guard case .completedEarlierCommit = process(f, item) else { Issue.record("not completed"); return }
        try expectTotalsMatchRecords(output: f.out, options: options)
        #expect(try Files.json(f.out + "/totals.json")["shards_ok"] == .int(1))
    }

    /// Error records go through the same path: a full disk while quarantining an invalid shard loses nothing.
    @Test func errorRecordOnAFullDisk() throws {
        let f = try fixture()
        defer { f.dir.remove() }
        try Files.drop(ShardFactory.garbage(), named: "junk.lshd.zst", in: f.spool)
        guard case .claimed(let item) = try f.store.claim("junk.lshd.zst") else { Issue.record("not claimed"); return }
        f.faults.fail(.write, with: ENOSPC, matching: "error.json")
        guard case .retry = process(f, item) else { Issue.record("not retried"); return }
        #expect(!Files.exists(f.out + "/junk.lshd.zst.error.json"))
        #expect(Files.exists(f.work + "/junk.lshd.zst"))
        f.faults.clear()
        guard case .failed = process(f, item) else { Issue.record("not quarantined"); return }
        #expect(Files.exists(f.spool + "/failed/junk.lshd.zst"))
        try expectTotalsMatchRecords(output: f.out, options: options)
    }

    /// `totals.json` cannot be written (full disk) although the summary was: the totals file lags, is marked
    /// stale, and is rewritten at the next tick once there is room; it never counts the shard twice.
    @Test func totalsWriteFailureIsRetried() throws {
        let f = try fixture()
        defer { f.dir.remove() }
        let item = try drop(f, "t.lshd.zst")
        f.faults.fail(.write, with: ENOSPC, matching: "totals.json")
        guard case .succeeded = process(f, item) else { Issue.record("not committed"); return }
        #expect(f.totals.isStale)
        #expect(try Files.json(f.out + "/totals.json")["shards_ok"] == .int(0), "the old totals stay in place, whole")
        f.totals.flushIfNeeded()
        #expect(f.totals.isStale, "still full")
        f.faults.clear()
        f.totals.flushIfNeeded()
        #expect(!f.totals.isStale)
        try expectTotalsMatchRecords(output: f.out, options: options)
    }
}

