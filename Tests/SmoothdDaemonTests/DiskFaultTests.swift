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
final class DiskFaultSeamTests {
    let options = MetricOptions()
    let dir = TempDirectory()
    let faults = FaultInjector()
    let store: SpoolStore
    let totals: TotalsFile
    var spool: String { dir.sub("spool") }
    var out: String { dir.sub("out") }
    var work: String { spool + "/.smoothd-work" }

    /// A fresh spool and output directory per test (Swift Testing makes one instance per test).
    init() throws {
        (store, totals) = try startStore(dir, faults: faults, options: options)
    }

    deinit { dir.remove() }

    func process(_ item: WorkItem) -> ClaimDisposition {
        store.process(item, evaluator: slotEvaluator(options), options: options, totals: totals, gate: CommitGate())
    }

    func drop(_ name: String, rows: Int = 50) throws -> WorkItem {
        try Files.drop(try ShardFactory.valid(rows: rows, seed: UInt64(name.utf8.count)), named: name, in: spool)
        return try claim(store, name)
    }

    /// Processes `item` under an injected fault: a retry whose error says `message`, and nothing half-written.
    /// Returns the error text, or nil (an issue recorded) when the shard was not retried.
    @discardableResult
    func expectRetry(_ item: WorkItem, saying message: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> String? {
        let disposition = process(item)
        guard case .retry(_, let error) = disposition else {
            Issue.record("not retried: \(disposition)", sourceLocation: sourceLocation)
            return nil
        }
        #expect(error.contains(message), "\(error)", sourceLocation: sourceLocation)
        try expectNothingCommitted(item.instance, sourceLocation: sourceLocation)
        return error
    }

    /// Nothing half-written: no temporary file, no record for `instance`; the shard still claimed.
    func expectNothingCommitted(_ instance: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let outputs = Files.list(out)
        #expect(Files.leftovers(out).isEmpty, "temporary file left: \(outputs)", sourceLocation: sourceLocation)
        #expect(!outputs.contains(ShardName.summaryFile(instance)), sourceLocation: sourceLocation)
        #expect(Files.exists(work + "/" + instance), "the shard must stay claimed", sourceLocation: sourceLocation)
        #expect(!Files.exists(spool + "/done/" + instance), sourceLocation: sourceLocation)
    }

    /// The output filesystem is full (`ENOSPC` from `write`, after part of the data landed), then has room again.
    @Test func outputFullThenRoomAgain() throws {
        let item = try drop("full.lshd.zst")
        faults.fail(.write, with: ENOSPC, matching: "summary")
        for _ in 0..<3 {
            try expectRetry(item, saying: "No space left on device")
            try expectTotalsMatchRecords(output: out, options: options)
        }
        faults.clear()
        guard case .succeeded = process(item) else { Issue.record("not committed once space returned"); return }
        #expect(Files.list(out).filter { $0.hasSuffix(".summary.json") } == ["full.lshd.zst.summary.json"])
        #expect(Files.exists(spool + "/done/full.lshd.zst"))
        try expectTotalsMatchRecords(output: out, options: options)
    }

    /// The output directory becomes read-only (`EROFS` when the temporary file is created, or at the rename).
    @Test func outputReadOnlyThenWritable() throws {
        let item = try drop("ro.lshd.zst")
        for operation in [FaultInjector.Operation.create, .rename] {
            faults.fail(operation, with: EROFS, matching: "ro.lshd.zst.summary")
            guard try expectRetry(item, saying: "Read-only file system") != nil else { return }
            faults.clear()
        }
        guard case .succeeded = process(item) else { Issue.record("not committed once writable"); return }
        try expectTotalsMatchRecords(output: out, options: options)
        #expect(try Files.json(out + "/totals.json")["shards_ok"] == .int(1))
    }

    /// `fsync` of the record fails (`EIO`): an error, never ignored; the next attempt writes a new file.
    @Test func failingFileFsyncIsAnError() throws {
        let item = try drop("sync.lshd.zst")
        faults.fail(.fileSync, with: EIO, matching: "summary", times: 1)
        guard let error = try expectRetry(item, saying: "Input/output error") else { return }
        #expect(error.hasPrefix("fsync "), "\(error)")
        #expect(faults.injected(.fileSync) == 1)
        guard case .succeeded = process(item) else { Issue.record("not committed"); return }
        try expectTotalsMatchRecords(output: out, options: options)
    }

    /// `fsync` of the output directory fails after the record was renamed into place: the commit is not
    /// considered done. The next attempt finds the record, writes it again durably (a failed fsync is never
    /// trusted), counts it once in the totals, and finishes the move.
    @Test func failingDirectoryFsyncAfterTheRenameIsAnError() throws {
        let item = try drop("dirsync.lshd.zst")
        faults.fail(.directorySync, with: EIO, matching: out, times: 1)
        guard case .retry(_, let error) = process(item) else { Issue.record("directory fsync failure ignored"); return }
        #expect(error.contains("Input/output error"))
        #expect(Files.exists(work + "/dirsync.lshd.zst"), "still claimed")
        #expect(!Files.exists(spool + "/done/dirsync.lshd.zst"))
        guard case .completedEarlierCommit(_, succeeded: true) = process(item) else { Issue.record("not completed"); return }
        #expect(!totals.hasRecorded("dirsync.lshd.zst"), "forgotten once the commit finished")
        try expectTotalsMatchRecords(output: out, options: options)
        #expect(try Files.json(out + "/totals.json")["shards_ok"] == .int(1))
        #expect(Files.exists(spool + "/done/dirsync.lshd.zst"))
        #expect(Files.leftovers(out).isEmpty)
    }

    /// The record and totals are committed but moving the shard to `done/` fails (its directory fsync): the
    /// next attempt only finishes the move; the totals do not count the shard twice.
    @Test func failingMoveAfterTheRecordCountsOnce() throws {
        let item = try drop("move.lshd.zst")
        faults.fail(.directorySync, with: EIO, matching: "/done", times: 1)
        let first = process(item)
        guard case .retry = first else { Issue.record("not retried: \(first)"); return }
        #expect(Files.exists(out + "/move.lshd.zst.summary.json"))
        guard case .completedEarlierCommit = process(item) else { Issue.record("not completed"); return }
        try expectTotalsMatchRecords(output: out, options: options)
        #expect(try Files.json(out + "/totals.json")["shards_ok"] == .int(1))
    }

    /// Error records go through the same path: a full disk while quarantining an invalid shard loses nothing.
    @Test func errorRecordOnAFullDisk() throws {
        try Files.drop(ShardFactory.garbage(), named: "junk.lshd.zst", in: spool)
        let item = try claim(store, "junk.lshd.zst")
        faults.fail(.write, with: ENOSPC, matching: "error.json")
        guard case .retry = process(item) else { Issue.record("not retried"); return }
        #expect(!Files.exists(out + "/junk.lshd.zst.error.json"))
        #expect(Files.exists(work + "/junk.lshd.zst"))
        faults.clear()
        guard case .failed = process(item) else { Issue.record("not quarantined"); return }
        #expect(Files.exists(spool + "/failed/junk.lshd.zst"))
        try expectTotalsMatchRecords(output: out, options: options)
    }

    /// `totals.json` cannot be written (full disk) although the summary was: the totals file lags, is marked
    /// stale, and is rewritten at the next tick once there is room; it never counts the shard twice.
    @Test func totalsWriteFailureIsRetried() throws {
        let item = try drop("t.lshd.zst")
        faults.fail(.write, with: ENOSPC, matching: "totals.json")
        guard case .succeeded = process(item) else { Issue.record("not committed"); return }
        #expect(totals.isStale)
        #expect(try Files.json(out + "/totals.json")["shards_ok"] == .int(0), "the old totals stay in place, whole")
        totals.flushIfNeeded()
        #expect(totals.isStale, "still full")
        faults.clear()
        totals.flushIfNeeded()
        #expect(!totals.isStale)
        try expectTotalsMatchRecords(output: out, options: options)
    }
}
