#if canImport(Glibc)
import Glibc
#endif
import Foundation
import LSHDFormat
import Logging
import SmoothdJSON
import SmoothdMetrics
import SmoothdPipeline
import Testing
import Zstd

@testable import SmoothdDaemon

/// Hostile and odd input in the spool, run through the real binary: decompression bombs, a header that promises
/// the largest K and ends, files that keep growing after their rename, unreadable files, odd names.
@Suite("Hostile spool input (real process)", .serialized)
struct HostileInputProcessTests {
    /// A tiny file that expands to more than 8 GiB of valid rows: processed in one pass within the memory
    /// budget (peak RSS of the daemon process, VmHWM, checked), with a correct summary.
    @Test func decompressionBombIsProcessedWithinTheMemoryBudget() throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let spool = dir.sub("spool"), out = dir.sub("out")
        let daemon = try DaemonProcess(servingIn: dir, extraArgs: ["--threads", "2", "--memory-budget", "64MiB"])
        #expect(eventually { Files.exists(spool + "/.smoothd-work") && daemon.log.contains("totals reconciled") })
        let idlePeak = ProcFS.status(daemon.pid, "VmHWM") ?? 0

        let classes = 32_000, rows = 68_000, countedEvery = 4_000
        var generator = SplitMix(seed: 8)
        let row = (0..<classes).map { _ in Float(Int(generator.next() % 2001) - 1000) / 100 }
        let generated = TestClock.seconds()
        let temp = spool + "/.bomb.lshd.zst.part"
        let payload = try ShardFactory.writeBomb(to: temp, classes: classes, rows: rows, countedEvery: countedEvery, row: row)
        let generationSeconds = TestClock.seconds() - generated
        var st = stat()
        #expect(stat(temp, &st) == 0)
        let fileSize = UInt64(st.st_size)
        #expect(payload >= 8 << 30)

        let dropped = TestClock.seconds()
        #expect(rename(temp, spool + "/bomb.lshd.zst") == 0)
        let done = eventually(timeout: 600) { Files.exists(out + "/bomb.lshd.zst.summary.json") || Files.exists(out + "/bomb.lshd.zst.error.json") }
        let seconds = TestClock.seconds() - dropped
        #expect(done, "\(daemon.log)")
        let peak = ProcFS.status(daemon.pid, "VmHWM") ?? 0
        daemon.signal(SIGTERM)
        #expect(daemon.waitForExit(timeout: 15))

        let summary = try Files.json(out + "/bomb.lshd.zst.summary.json")
        #expect(summary["rows"]?.intValue == Int64(rows))
        #expect(summary["counted_rows"]?.intValue == Int64(rows / countedEvery))
        #expect(summary["ignored_rows"]?.intValue == Int64(rows - rows / countedEvery))
        #expect(summary["payload_bytes"]?.intValue == Int64(payload))
        // Every counted row is the same row with label 1: the same metrics as a one-row shard of it.
        let options = MetricOptions()  // what the daemon above ran with (no metric flags)
        let one = dir.sub("one.lshd.zst")
        try ShardFactory.writeBomb(to: one, classes: classes, rows: 1, countedEvery: 1, row: row)
        guard case .success(let reference) = ShardEvaluator(options: EvaluationOptions(metrics: options, threads: 1)).evaluate(path: one) else {
            Issue.record("the one-row reference shard failed"); return
        }
        let referenceEntry = ShardEntry(reference, options: options).json
        for key in ["nll", "loss", "accuracy", "entropy", "brier", "ece"] {
            let got = try #require(summary[key]?.doubleValue, "\(key)"), want = try #require(referenceEntry[key]?.doubleValue, "\(key)")
            #expect(abs(got - want) <= 1e-12 * max(1, abs(want)), "\(key): \(got) vs \(want)")
        }
        try expectTotalsMatchRecords(output: out)
        print(String(format: "bomb: file %.1f KiB -> payload %.2f GiB (ratio %.0f:1), generated in %.1f s; daemon processed it in %.1f s "
                     + "(%.2f GiB/s); peak RSS %.1f MiB (idle peak %.1f MiB), memory budget 64 MiB",
                     Double(fileSize) / 1024, Double(payload) / Double(1 << 30), Double(payload) / Double(fileSize), generationSeconds,
                     seconds, Double(payload) / Double(1 << 30) / seconds, Double(peak) / 1048576, Double(idlePeak) / 1048576))
        #expect(peak > 0)
        // Budget (64 MiB) plus the process's own footprint; far below the 8 GiB a naive reader would need.
        #expect(peak < 256 << 20, "peak RSS \(peak >> 20) MiB")
    }
}

extension HostileInputProcessTests {
    /// The largest K the format allows (16,777,216 classes: 64 MiB per float32 row): a header that promises it
    /// and ends, or ends inside the first row, fails fast as `truncated` without holding memory for rows; a
    /// complete two-row shard of that K is evaluated.
    @Test func largestClassCountTruncatedFailsFastAndBounded() throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let spool = dir.sub("spool"), out = dir.sub("out")
        let daemon = try DaemonProcess(servingIn: dir, extraArgs: ["--max-inflight", "1", "--threads", "2", "--memory-budget", "64MiB"])
        #expect(eventually { daemon.log.contains("totals reconciled") })
        let k: UInt32 = 16_777_216
        // Header only; header + a block of 1000 rows with its labels and 1 MiB of the first row's logits.
        var block: [UInt8] = []
        withUnsafeBytes(of: UInt32(1000).littleEndian) { block += $0 }
        for _ in 0..<1000 { withUnsafeBytes(of: Int32(3).littleEndian) { block += $0 } }
        block += [UInt8](repeating: 0x3F, count: 1 << 20)
        let started = TestClock.seconds()
        try Files.drop(ZstdCompressor.compressFrame(ShardFactory.rawPayload(classes: k, statedRows: 1000)), named: "k-header-only.lshd.zst", in: spool)
        try Files.drop(ZstdCompressor.compressFrame(ShardFactory.rawPayload(classes: k, rest: block)), named: "k-partial-row.lshd.zst", in: spool)
        let failedFast = eventually(timeout: 60) {
            Files.exists(out + "/k-header-only.lshd.zst.error.json") && Files.exists(out + "/k-partial-row.lshd.zst.error.json")
        }
        let truncatedSeconds = TestClock.seconds() - started
        #expect(failedFast, "\(daemon.log)")
        let truncatedPeak = ProcFS.status(daemon.pid, "VmHWM") ?? 0
        for name in ["k-header-only.lshd.zst", "k-partial-row.lshd.zst"] {
            let record = try Files.json(out + "/" + name + ".error.json")
            #expect(record["error"]?["kind"] == .string("truncated"), "\(record)")
            // The record is committed before the move, so the file may reach failed/ a moment later.
            #expect(eventually(timeout: 10) { Files.exists(spool + "/failed/" + name) })
        }

        // A complete shard of two 64 MiB rows (labels 5 and ignore_index).
        var rows: [UInt8] = []
        withUnsafeBytes(of: UInt32(2).littleEndian) { rows += $0 }
        withUnsafeBytes(of: Int32(5).littleEndian) { rows += $0 }
        withUnsafeBytes(of: Int32(-100).littleEndian) { rows += $0 }
        var logits = [UInt8](repeating: 0, count: Int(k) * 4 * 2)
        logits.withUnsafeMutableBytes { raw in
            let floats = raw.bindMemory(to: Float.self)
            for i in 0..<floats.count { floats[i] = Float(i % 97) / 16 }
        }
        rows += logits
        rows += [0, 0, 0, 0]
        let complete = try ZstdCompressor.compressFrame(ShardFactory.rawPayload(classes: k, rest: rows), level: 1)
        logits = []
        rows = []
        try Files.drop(complete, named: "k-complete.lshd.zst", in: spool)
        #expect(eventually(timeout: 120) { Files.exists(out + "/k-complete.lshd.zst.summary.json") }, "\(daemon.log)")
        let completePeak = ProcFS.status(daemon.pid, "VmHWM") ?? 0
        daemon.signal(SIGTERM)
        #expect(daemon.waitForExit(timeout: 15))
        let summary = try Files.json(out + "/k-complete.lshd.zst.summary.json")
        #expect(summary["rows"]?.intValue == 2)
        #expect(summary["counted_rows"]?.intValue == 1)
        #expect(summary["num_classes"]?.intValue == Int64(k))
        try expectTotalsMatchRecords(output: out)
        print(String(format: "K=16777216: two truncated shards rejected %.2f s after the drop (incl. the 1 s settle check), peak RSS %.1f MiB; "
                     + "a complete 2-row shard (128 MiB payload, %d KiB file): peak RSS %.1f MiB",
                     truncatedSeconds, Double(truncatedPeak) / 1048576, complete.count / 1024, Double(completePeak) / 1048576))
        #expect(truncatedPeak < 128 << 20, "a truncated header must not make the daemon hold rows: \(truncatedPeak >> 20) MiB")
    }
}

/// The same hostile input through the claim/commit state machine directly, with the file-access seam where the
/// real condition cannot be produced on demand.
@Suite("Hostile spool input (state machine)")
struct HostileInputStoreTests {
    let options = MetricOptions()
    func start(_ dir: TempDirectory, faults: FaultInjector? = nil) throws -> (SpoolStore, TotalsFile) {
        try startStore(dir, faults: faults, options: options)
    }

    func evaluator() -> ShardEvaluator { slotEvaluator(options) }

    /// A symlink or FIFO that appears in the work directory under a claimed name (swapped in after the claim's
    /// check) is never opened through: `O_NOFOLLOW` and `O_NONBLOCK` refuse it, the regular-file check rejects it,
    /// and it is put back in the spool untouched, with no record written.
    @Test func symlinkOrFifoSwappedInAfterTheClaimIsPutBackUntouched() throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let (store, totals) = try start(dir)
        let spool = dir.sub("spool"), work = spool + "/.smoothd-work", out = dir.sub("out")
        let secret = dir.sub("secret.lshd.zst")
        try Files.write(try ShardFactory.valid(rows: 5, seed: 1), to: secret)
        #expect(symlink(secret, work + "/swapped-link.lshd.zst") == 0)
        #expect(mkfifo(work + "/swapped-fifo.lshd.zst", 0o644) == 0)
        for name in ["swapped-link.lshd.zst", "swapped-fifo.lshd.zst"] {
            let item = WorkItem(source: name, instance: name, size: 0)
            let result = store.process(item, evaluator: evaluator(), options: options, totals: totals, gate: CommitGate())
            guard case .ignored = result else { Issue.record("\(name): \(result)"); continue }
            #expect(Files.exists(spool + "/" + name), "\(name) put back")
            #expect(!Files.exists(work + "/" + name))
            #expect(!Files.exists(out + "/" + name + ".summary.json") && !Files.exists(out + "/" + name + ".error.json"))
        }
        var st = stat()
        #expect(lstat(spool + "/swapped-link.lshd.zst", &st) == 0 && st.st_mode & S_IFMT == S_IFLNK)
        #expect(Files.exists(secret))
        try expectTotalsMatchRecords(output: out, options: options)
    }

    /// A `done` or `failed` directory, or the work directory, replaced by a symlink before the daemon starts is
    /// refused (it would redirect writes out of the spool); the symlink's target is never written.
    @Test func daemonDirectoriesThatAreSymlinksAreRefused() throws {
        for victim in ["done", "failed", ".smoothd-work"] {
            let dir = TempDirectory()
            defer { dir.remove() }
            let spool = dir.sub("spool"), elsewhere = dir.sub("elsewhere")
            #expect(mkdir(spool, 0o755) == 0 && mkdir(elsewhere, 0o755) == 0)
            #expect(symlink(elsewhere, spool + "/" + victim) == 0)
            #expect(throws: (any Error).self, "\(victim)") {
                _ = try SpoolStore(spoolPath: spool, outputPath: dir.sub("out"), deleteProcessed: false)
            }
            #expect(Files.list(elsewhere).isEmpty)
        }
    }

    /// A work directory that belongs to another user (e.g. made by a producer before the first start) is refused.
    @Test(.enabled(if: Privileges.isRoot, "needs root to chown"))
    func workDirectoryOwnedByAnotherUserIsRefused() throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let spool = dir.sub("spool")
        #expect(mkdir(spool, 0o755) == 0 && mkdir(spool + "/.smoothd-work", 0o777) == 0)
        #expect(chown(spool + "/.smoothd-work", Privileges.unprivilegedID, Privileges.unprivilegedID) == 0)
        #expect(throws: SpoolLayoutError.self) {
            _ = try SpoolStore(spoolPath: spool, outputPath: dir.sub("out"), deleteProcessed: false)
        }
    }

    /// A file that cannot be opened for reading (`EACCES`, as for another user's mode-0600 file) is rejected at
    /// once: `kind: unreadable` error record, the shard moved to `failed/`, no retry. A transient open error
    /// (`EIO`) is retried, and rejected after `maximumReadFailures` attempts.
    @Test func unreadableShardsAreQuarantinedAndNeverLoop() throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let faults = FaultInjector()
        let (store, totals) = try start(dir, faults: faults)
        let spool = dir.sub("spool"), out = dir.sub("out")
        let bytes = try ShardFactory.valid(rows: 10, seed: 2)

        try Files.drop(bytes, named: "denied.lshd.zst", in: spool)
        faults.fail(.open, with: EACCES, matching: "denied")
        var result = store.process(try claim(store, "denied.lshd.zst"), evaluator: evaluator(), options: options, totals: totals, gate: CommitGate())
        guard case .failed(_, let facts) = result else { Issue.record("\(result)"); return }
        #expect(facts.kind == .unreadable)
        let record = try Files.json(out + "/denied.lshd.zst.error.json")
        #expect(record["error"]?["kind"] == .string("unreadable"))
        #expect(record["error"]?["reason"]?.stringValue?.contains("Permission denied") == true)
        #expect(Files.exists(spool + "/failed/denied.lshd.zst"))

        try Files.drop(bytes, named: "flaky.lshd.zst", in: spool)
        faults.fail(.open, with: EIO, matching: "flaky")
        let item = try claim(store, "flaky.lshd.zst")
        var attempts = ShardAttempts()
        for _ in 1..<SpoolStore.maximumReadFailures {
            result = store.process(item, evaluator: evaluator(), options: options, totals: totals, gate: CommitGate(), attempts: attempts)
            guard case .retryRead = result else { Issue.record("\(result)"); return }
            #expect(Files.exists(spool + "/.smoothd-work/flaky.lshd.zst"), "stays claimed between attempts")
            attempts.readFailures += 1
        }
        result = store.process(item, evaluator: evaluator(), options: options, totals: totals, gate: CommitGate(), attempts: attempts)
        guard case .failed(_, let flaky) = result else { Issue.record("\(result)"); return }
        #expect(flaky.kind == .unreadable && flaky.reason.contains("5 attempts"))
        #expect(Files.exists(spool + "/failed/flaky.lshd.zst"))
        try expectTotalsMatchRecords(output: out, options: options)
        #expect(try Files.json(out + "/totals.json")["shards_failed"] == .int(2))
    }

    /// A file whose size or modification time changes while it is read (a producer still writing after the
    /// rename) is never committed from that read: the result is `unsettled` (evaluated again later), and after
    /// `maximumChanges` attempts it is rejected as `unstable_file`. A file that stopped changing is committed.
    @Test func fileStillGrowingAfterItsRenameIsRetriedThenRejected() throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let faults = FaultInjector()
        let (store, totals) = try start(dir, faults: faults)
        let spool = dir.sub("spool"), out = dir.sub("out"), work = spool + "/.smoothd-work"
        let full = try ShardFactory.valid(rows: 200, seed: 3)
        // The producer renamed the first half and is still appending.
        try Files.drop(Array(full[..<(full.count / 2)]), named: "growing.lshd.zst", in: spool)
        let item = try claim(store, "growing.lshd.zst")
        faults.setAfterEvaluation { instance in
            let fd = open(work + "/" + instance, O_WRONLY | O_APPEND)
            guard fd >= 0 else { return }
            _ = [UInt8](repeating: 0, count: 16).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            close(fd)
        }
        var result = store.process(item, evaluator: evaluator(), options: options, totals: totals, gate: CommitGate())
        guard case .unsettled(_, let what) = result else { Issue.record("\(result)"); return }
        #expect(what.contains("changed while it was read"))
        #expect(!Files.exists(out + "/growing.lshd.zst.error.json"), "a truncated read of a growing file is not a verdict")
        #expect(Files.exists(work + "/growing.lshd.zst"))

        // It keeps changing: rejected once the attempts are used up.
        result = store.process(item, evaluator: evaluator(), options: options, totals: totals, gate: CommitGate(),
                               attempts: ShardAttempts(changes: SpoolStore.maximumChanges - 1))
        guard case .failed(_, let facts) = result else { Issue.record("\(result)"); return }
        #expect(facts.kind == .unstableFile)
        #expect(try Files.json(out + "/growing.lshd.zst.error.json")["error"]?["kind"] == .string("unstable_file"))
        #expect(Files.exists(spool + "/failed/growing.lshd.zst"))

        // A complete file that is appended to during a successful read is not committed either.
        try Files.drop(full, named: "appended.lshd.zst", in: spool)
        result = store.process(try claim(store, "appended.lshd.zst"), evaluator: evaluator(), options: options, totals: totals, gate: CommitGate())
        guard case .unsettled = result else { Issue.record("\(result)"); return }
        #expect(!Files.exists(out + "/appended.lshd.zst.summary.json"))

        // Once it stops changing, the next attempt commits its verdict (here: trailing bytes after the end marker).
        faults.setAfterEvaluation(nil)
        result = store.process(WorkItem(source: "appended.lshd.zst", instance: "appended.lshd.zst", size: 0), evaluator: evaluator(),
                               options: options, totals: totals, gate: CommitGate(), attempts: ShardAttempts(changes: 1))
        guard case .failed(_, let trailing) = result else { Issue.record("\(result)"); return }
        #expect([.shard(.format(.trailingBytes)), .shard(.zstdError)].contains(trailing.kind), "\(trailing.kind)")
        try expectTotalsMatchRecords(output: out, options: options)
    }

    /// A zero-byte shard is invalid (`truncated`), quarantined once, with its record.
    @Test func zeroByteShardIsQuarantined() throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let (store, totals) = try start(dir)
        try Files.drop([], named: "empty.lshd.zst", in: dir.sub("spool"))
        let result = store.process(try claim(store, "empty.lshd.zst"), evaluator: evaluator(), options: options, totals: totals, gate: CommitGate())
        guard case .failed(_, let facts) = result else { Issue.record("\(result)"); return }
        #expect(facts.kind == .shard(.format(.truncated)) && facts.offset == 0)
        #expect(Files.exists(dir.sub("spool") + "/failed/empty.lshd.zst"))
        try expectTotalsMatchRecords(output: dir.sub("out"), options: options)
    }

    /// Hostile producer metadata: 1 MiB of meta (the format's limit), meta nested 256 deep (the JSON parser's
    /// limit), and control characters. Summaries stay small (meta larger or deeper than the summary limits is
    /// replaced by `null` plus `meta_omitted`), every string is escaped, and — the reason for the depth limit — the
    /// summaries can still be read back when totals are rebuilt at the next start.
    @Test func hostileMetaIsBoundedEscapedAndReadableAgain() throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let (store, totals) = try start(dir)
        let spool = dir.sub("spool"), out = dir.sub("out")
        let wide = "{\"a\":[" + Array(repeating: "0", count: 520_000).joined(separator: ",") + "]}"  // ~1 MiB, flat
        // 256 levels: the most the parser accepts in a shard, one more than it accepts inside a summary.
        let deep = "{\"a\":" + String(repeating: "[", count: 255) + String(repeating: "]", count: 255) + "}"
        let nested = "{\"a\":" + String(repeating: "[", count: 30) + "[0,1,2]" + String(repeating: "]", count: 30) + "}"
        let control = "{\"model\":\"evil\\u001b[2J\\u0000\\n<3>forged log line\",\"ok\":true}"
        let shards = ["wide": wide, "deep": deep, "nested": nested, "control": control]
        #expect(wide.utf8.count <= 1 << 20)
        for (name, meta) in shards {
            try Files.drop(try ShardFactory.withMeta(meta), named: name + ".lshd.zst", in: spool)
            let result = store.process(try claim(store, name + ".lshd.zst"), evaluator: evaluator(), options: options, totals: totals, gate: CommitGate())
            guard case .succeeded = result else { Issue.record("\(name): \(result)"); continue }
        }
        var sizes: [String: Int] = [:]
        for name in shards.keys {
            let path = out + "/" + name + ".lshd.zst.summary.json"
            var st = stat()
            #expect(stat(path, &st) == 0)
            sizes[name] = Int(st.st_size)
            #expect(st.st_size < 80 << 10, "\(name): summary of \(st.st_size) bytes")
            let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
            #expect(!bytes.contains { $0 < 0x20 && $0 != 0x0A }, "\(name): raw control bytes in the summary")
        }
        print("hostile meta, summary sizes in bytes: \(sizes.sorted { $0.key < $1.key })")
        let wideRecord = try Files.json(out + "/wide.lshd.zst.summary.json")
        #expect(wideRecord["meta"] == .null && wideRecord["meta_omitted"]?["meta_bytes"]?.intValue == Int64(wide.utf8.count))
        let deepRecord = try Files.json(out + "/deep.lshd.zst.summary.json")
        #expect(deepRecord["meta"] == .null && deepRecord["meta_omitted"]?["reason"]?.stringValue?.contains("deeper") == true)
        #expect(try Files.json(out + "/nested.lshd.zst.summary.json")["meta"]?["a"] != nil, "meta within the limits is kept")
        let controlRecord = try Files.json(out + "/control.lshd.zst.summary.json")
        #expect(controlRecord["meta"]?["model"] == .string("evil\u{1b}[2J\u{0}\n<3>forged log line"), "kept, escaped in the file")
        // A restart rebuilds the totals from these summaries: none is unreadable.
        let (ledger, unreadable, _) = try store.rebuildLedger(options: options)
        #expect(unreadable.isEmpty, "\(unreadable)")
        #expect(ledger.shardsOK == 4)
        try expectTotalsMatchRecords(output: out, options: options)
    }

    /// The summary limits themselves.
    @Test func summaryMetaLimits() throws {
        #expect(SummaryMeta.reasonToOmit(try JSONValue.parse(#"{"model":"m","step":12}"#)) == nil)
        let deep = try JSONValue.parse("{\"a\":" + String(repeating: "[", count: 31) + String(repeating: "]", count: 31) + "}")
        #expect(SummaryMeta.reasonToOmit(deep) == nil, "32 levels are kept")
        let deeper = try JSONValue.parse("{\"a\":" + String(repeating: "[", count: 32) + String(repeating: "]", count: 32) + "}")
        #expect(SummaryMeta.reasonToOmit(deeper) != nil)
        // Indentation counts: 20 levels of 1,000 small items fit compactly but not indented.
        let indented = try JSONValue.parse("{\"a\":" + String(repeating: "[", count: 20) + Array(repeating: "1", count: 3000).joined(separator: ",")
                                           + String(repeating: "]", count: 20) + "}")
        #expect(SummaryMeta.reasonToOmit(indented) != nil)
        let record = JSONValue.object([("meta", indented)]).serialized(pretty: true)
        #expect(record.utf8.count > SummaryMeta.maximumBytes, "the estimate agrees that it is too large: \(record.utf8.count)")
    }
}

extension HostileInputProcessTests {
    /// Names with spaces, newlines, escape sequences, C1 controls and bytes that are not UTF-8: each shard is
    /// recorded under its escaped display name, every file smoothd writes has a printable name inside the output
    /// or spool directory, JSON and logs stay one value per field and one line per event; hidden, over-long and
    /// zero-byte entries are handled as documented.
    @Test func oddNamesAreRecordedSafely() throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let spool = dir.sub("spool"), out = dir.sub("out")
        #expect(mkdir(spool, 0o755) == 0)
        let good = try ShardFactory.valid(rows: 12, seed: 5)
        let cases: [(name: [UInt8], display: String)] = [
            (Array("with space.lshd.zst".utf8), "with space.lshd.zst"),
            (Array("new\nline.lshd.zst".utf8), "new%0Aline.lshd.zst"),
            (Array("esc\u{1b}[31mred.lshd.zst".utf8), "esc%1B[31mred.lshd.zst"),
            (Array("latin1-".utf8) + [0xE9] + Array(".lshd.zst".utf8), "latin1-%E9.lshd.zst"),
            (Array("pct%41-".utf8) + [0xFF, 0xFE] + Array(".lshd.zst".utf8), "pct%2541-%FF%FE.lshd.zst"),
            (Array("ünïcødé ✓.lshd.zst".utf8), "ünïcødé ✓.lshd.zst"),
            (Array("nel\u{85}.lshd.zst".utf8), "nel%C2%85.lshd.zst"),
            (Array("-rf --no-preserve-root.lshd.zst".utf8), "-rf --no-preserve-root.lshd.zst"),
            (Array(String(repeating: "n", count: 196).utf8) + Array(".zst".utf8), String(repeating: "n", count: 196) + ".zst"),
        ]
        for (i, c) in cases.enumerated() {
            try Files.dropRaw(try ShardFactory.valid(rows: 10 + i, seed: UInt64(i)), nameBytes: c.name, in: spool)
        }
        // Invalid shards with odd names, and a zero-byte file.
        try Files.dropRaw(ShardFactory.garbage(), nameBytes: Array("bad\nshard\r.lshd.zst".utf8), in: spool)
        try Files.drop([], named: "empty.lshd.zst", in: spool)
        // Left alone: hidden, a name of dots.
        let untouched: [[UInt8]] = [Array("..lshd.zst".utf8), Array("...zst".utf8)]
        for name in untouched { try Files.dropRaw(good, nameBytes: name, in: spool) }
        // Too long (222 bytes, or 77 bytes escaped to 223): quarantined under a shortened name.
        let overlong: [[UInt8]] = [
            Array(String(repeating: "x", count: 218).utf8) + Array(".zst".utf8),
            [UInt8](repeating: 0xFF, count: 73) + Array(".zst".utf8),
        ]
        for name in overlong { try Files.dropRaw(good, nameBytes: name, in: spool) }
        // Not regular files, with shard-like names: a FIFO (opening it would block a reader), a directory, a
        // symlink to a shard outside the spool, a symlink to a FIFO, a dangling symlink.
        let outside = dir.sub("outside.lshd.zst")
        try Files.write(good, to: outside)
        #expect(mkfifo(spool + "/fifo.lshd.zst", 0o666) == 0)
        #expect(mkdir(spool + "/directory.lshd.zst", 0o755) == 0)
        #expect(symlink(outside, spool + "/link.lshd.zst") == 0)
        #expect(symlink(spool + "/fifo.lshd.zst", spool + "/link-to-fifo.lshd.zst") == 0)
        #expect(symlink(dir.sub("nowhere"), spool + "/dangling.lshd.zst") == 0)
        let notRegular = ["fifo.lshd.zst", "directory.lshd.zst", "link.lshd.zst", "link-to-fifo.lshd.zst", "dangling.lshd.zst"]

        let daemon = try DaemonProcess(servingIn: dir, extraArgs: ["--exit-when-idle"])
        #expect(daemon.waitForExit(timeout: 60))
        #expect(daemon.exitCode == 0, "\(daemon.log)")

        let outputNames = try DirectoryHandle(path: out, create: false).names()
        let doneNames = try DirectoryHandle(path: spool + "/done", create: false).names()
        let failedNames = try DirectoryHandle(path: spool + "/failed", create: false).names()
        for name in outputNames + doneNames + failedNames {
            #expect(!ShardName.isKey(name), "a written name is not printable UTF-8: \(name)")
            #expect(!name.unicodeScalars.contains { ShardName.isControl($0) })
        }
        for (i, c) in cases.enumerated() {
            let summary = try Files.json(out + "/" + c.display + ".summary.json")
            #expect(summary["shard"] == .string(c.display))
            #expect(summary["rows"]?.intValue == Int64(10 + i))
            #expect(doneNames.contains(c.display), "\(c.display)")
            #expect(!Files.existsRaw(c.name, in: spool), "\(c.display) left in the spool")
        }
        let bad = try Files.json(out + "/bad%0Ashard%0D.lshd.zst.error.json")
        #expect(bad["shard"] == .string("bad%0Ashard%0D.lshd.zst") && bad["ok"] == .bool(false))
        #expect(failedNames.contains("bad%0Ashard%0D.lshd.zst"))
        #expect(try Files.json(out + "/empty.lshd.zst.error.json")["error"]?["kind"] == .string("truncated"))
        for name in untouched {
            #expect(Files.existsRaw(name, in: spool), "\(ShardName.key(forEntryBytes: name)) must be left alone")
        }
        for name in overlong {
            let key = ShardName.key(forEntryBytes: name)
            let short = ShardName.shortened(key)
            #expect(try Files.json(out + "/" + short + ".error.json")["shard"] == .string(ShardName.display(key)))
            #expect(failedNames.contains(short) && !Files.existsRaw(name, in: spool), "\(short)")
        }
        for name in notRegular {
            #expect(Files.exists(spool + "/" + name), "\(name) must be left alone")
            #expect(!outputNames.contains { $0.hasPrefix(name) }, "\(name) must not be recorded")
        }
        #expect(Array(try Data(contentsOf: URL(fileURLWithPath: outside))) == good, "the symlink's target is untouched")
        // Nothing was written anywhere but the output and spool directories.
        #expect(Files.list(dir.path) == ["daemon.log", "out", "outside.lshd.zst", "spool"])
        #expect(Set(outputNames.filter { !$0.hasSuffix(".summary.json") && !$0.hasSuffix(".error.json") }) == ["totals.json", OutputLock.fileName])
        // One line per event, no raw control characters in the log.
        let logBytes = Array(Files.text(dir.sub("daemon.log")).utf8)
        #expect(!logBytes.contains { $0 < 0x20 && $0 != 0x0A }, "raw control bytes in the log")
        for line in daemon.log.split(separator: "\n") {
            #expect(line.first?.isNumber == true, "a log line that does not start with a timestamp: \(line)")
        }
        #expect(daemon.log.contains("shard=new%0Aline.lshd.zst"))
        #expect(daemon.log.contains("recorded under its escaped name"))
        try expectTotalsMatchRecords(output: out)
        let totals = try Files.json(out + "/totals.json")
        #expect(totals["shards_ok"] == .int(Int64(cases.count)))
        #expect(totals["shards_failed"] == .int(2 + Int64(overlong.count)))

        // A producer that later uses an escaped display name literally reuses that name: recorded as NAME~2,
        // superseding the first record (kept untouched in superseded/).
        let before = Files.text(out + "/latin1-%E9.lshd.zst.summary.json")
        try Files.drop(good, named: "latin1-%E9.lshd.zst", in: spool)
        let again = try DaemonProcess(servingIn: dir, extraArgs: ["--exit-when-idle"])
        #expect(again.waitForExit(timeout: 60))
        #expect(Files.text(out + "/superseded/latin1-%E9.lshd.zst.summary.json") == before)
        #expect(try Files.json(out + "/latin1-%E9.lshd.zst~2.summary.json")["rows"]?.intValue == 12)
        try expectTotalsMatchRecords(output: out)
    }

    /// A producer renames a shard too early and keeps appending to it for about 2.5 s: the daemon notices the
    /// change (or the settle check does), evaluates it again with backoff, and commits exactly one summary of the
    /// complete file, with no error record.
    /// Run as the invoker and as the unit runs it (nobody, no capabilities).
    @Test(arguments: RunAs.allCases)
    func shardStillGrowingAfterItsRenameGetsOneSummary(runAs: RunAs) throws {
        try runAs.requireAvailable()
        let dir = TempDirectory()
        defer { dir.remove() }
        let spool = dir.sub("spool"), out = dir.sub("out")
        if runAs == .nobody { Unprivileged.prepare(dir) }
        let daemon = try DaemonProcess(servingIn: dir, metricsListen: "127.0.0.1:0", runAs: runAs)
        let port = try #require(daemon.metricsPort())
        let full = try ShardFactory.valid(rows: 3000, classes: 16, seed: 11, frames: 4)
        let temp = spool + "/.growing.part"
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        #expect(fd >= 0)
        let pieces = 10
        let step = (full.count + pieces - 1) / pieces
        func append(_ k: Int) {
            let range = (k * step)..<min(full.count, (k + 1) * step)
            _ = full[range].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        }
        append(0)
        #expect(rename(temp, spool + "/growing.lshd.zst") == 0)
        for k in 1..<pieces {
            usleep(250_000)
            append(k)
        }
        close(fd)
        #expect(eventually(timeout: 90) { Files.exists(out + "/growing.lshd.zst.summary.json") || Files.exists(out + "/growing.lshd.zst.error.json") },
                "\(daemon.log)")
        let metrics = try httpRequest(port: port, "GET", "/metrics").body
        daemon.signal(SIGTERM)
        #expect(daemon.waitForExit(timeout: 15))
        #expect(!Files.exists(out + "/growing.lshd.zst.error.json"), "\(daemon.log)")
        #expect(try Files.json(out + "/growing.lshd.zst.summary.json")["rows"]?.intValue == 3000)
        #expect(Files.list(out).filter { $0.hasPrefix("growing") } == ["growing.lshd.zst.summary.json"])
        let unsettled = metricValue(metrics, "smoothd_unsettled_shards_total") ?? -1
        #expect(unsettled >= 1, "the growth was never noticed")
        #expect(daemon.log.contains("shard is still being written"))
        print("growing shard: evaluations discarded because the file changed: \(Int(unsettled)); one summary, no error record")
        try expectTotalsMatchRecords(output: out)
    }

    /// As an unprivileged user (nobody, through setpriv), as the systemd unit runs it: a file it may not rename
    /// (root's, in a sticky spool owned by root, like /tmp) is left in place, logged once and never retried in a
    /// loop; a file it may rename but not read (mode 000) is quarantined with a clear `unreadable` record; a
    /// readable one is processed. Once the unclaimable file changes (here: given to the daemon's user), it is
    /// claimed at the next rescan.
    @Test(.enabled(if: Unprivileged.available, "\(Unprivileged.unavailableReason ?? "")"))
    func filesOfAnotherUserOrUnreadable() throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let spool = dir.sub("spool"), out = dir.sub("out")
        let nobody = Privileges.unprivilegedID
        #expect(chmod(dir.path, 0o755) == 0)
        #expect(mkdir(spool, 0o755) == 0 && chmod(spool, 0o1777) == 0)
        #expect(mkdir(out, 0o755) == 0 && chown(out, nobody, nobody) == 0)
        let bytes = try ShardFactory.valid(rows: 20, seed: 4)
        try Files.drop(bytes, named: "roots-secret.lshd.zst", in: spool)
        #expect(chmod(spool + "/roots-secret.lshd.zst", 0o600) == 0)
        try Files.drop(bytes, named: "mode-000.lshd.zst", in: spool)
        #expect(chown(spool + "/mode-000.lshd.zst", nobody, nobody) == 0 && chmod(spool + "/mode-000.lshd.zst", 0) == 0)
        try Files.drop(bytes, named: "fine.lshd.zst", in: spool)
        #expect(chown(spool + "/fine.lshd.zst", nobody, nobody) == 0)

        let daemon = try DaemonProcess(servingIn: dir, extraArgs: ["--rescan-interval", "0.2"], runAs: .nobody)
        #expect(eventually(timeout: 30) { Files.exists(out + "/fine.lshd.zst.summary.json") && Files.exists(out + "/mode-000.lshd.zst.error.json") },
                "\(daemon.log)")
        // About ten rescans later the unclaimable file has still been reported exactly once.
        usleep(2_000_000)
        let claimErrors = daemon.log.components(separatedBy: "cannot claim shard").count - 1
        #expect(claimErrors == 1, "\(daemon.log)")
        #expect(daemon.log.contains("shard=roots-secret.lshd.zst"))
        #expect(Files.exists(spool + "/roots-secret.lshd.zst"), "left in place")
        let record = try Files.json(out + "/mode-000.lshd.zst.error.json")
        #expect(record["error"]?["kind"] == .string("unreadable"))
        #expect(record["error"]?["reason"]?.stringValue?.contains("Permission denied") == true)
        #expect(Files.exists(spool + "/failed/mode-000.lshd.zst"))
        let processStatus = Files.text("/proc/\(daemon.pid)/status")
        #expect(processStatus.contains("Uid:\t\(nobody)"), "the daemon runs unprivileged")

        // The owner gives the file away: it changes, so it is claimed at the next rescan.
        #expect(chown(spool + "/roots-secret.lshd.zst", nobody, nobody) == 0)
        #expect(eventually(timeout: 30) { Files.exists(out + "/roots-secret.lshd.zst.summary.json") }, "\(daemon.log)")
        daemon.signal(SIGTERM)
        #expect(daemon.waitForExit(timeout: 15))
        #expect(daemon.exitCode == 0)
        try expectTotalsMatchRecords(output: out)
        print("unprivileged daemon: unclaimable file reported \(claimErrors) time(s) over ~10 rescans; mode-000 file quarantined as unreadable")
    }
}

/// How a directory entry's name becomes the name its records are written under.
@Suite("Shard names: escaping and containment")
struct ShardNameEscapingTests {
    @Test func printableNamesAreKeptAndOthersEscapedReversibly() {
        let cases: [([UInt8], String, String)] = [
            (Array("a b.lshd.zst".utf8), "a b.lshd.zst", "a b.lshd.zst"),
            (Array("ünï ✓.zst".utf8), "ünï ✓.zst", "ünï ✓.zst"),
            (Array("50%.zst".utf8), "50%.zst", "50%.zst"),  // printable: a lone % stays as is
            (Array("a\nb.zst".utf8), "/a%0Ab.zst", "a%0Ab.zst"),
            (Array("a\u{7F}\u{85}.zst".utf8), "/a%7F%C2%85.zst", "a%7F%C2%85.zst"),
            ([0x78, 0xFF, 0x25, 0x0A] + Array(".zst".utf8), "/x%FF%25%0A.zst", "x%FF%25%0A.zst"),
            ([0xE2, 0x82] + Array(".zst".utf8), "/%E2%82.zst", "%E2%82.zst"),  // a cut multi-byte sequence
            ([0xC0, 0xAF] + Array(".zst".utf8), "/%C0%AF.zst", "%C0%AF.zst"),  // overlong "/" is just two bytes
        ]
        for (bytes, key, display) in cases {
            #expect(ShardName.key(forEntryBytes: bytes) == key)
            #expect(ShardName.display(key) == display)
            #expect(ShardName.entryBytes(key) == bytes, "\(key) decodes back to the entry's bytes")
            #expect(ShardName.isFinal(key))
            #expect(ShardName.instance(key, ordinal: 2) == display + "~2")
            #expect(!display.unicodeScalars.contains { ShardName.isControl($0) })
        }
        #expect(!ShardName.isFinal(".\u{301}x.zst"), "a leading dot with a combining mark is still hidden")
        // The 221-byte limit applies to the escaped name; a longer one is overlong (quarantined), not final.
        let long = [UInt8](repeating: 0xFF, count: 73) + Array(".zst".utf8)
        #expect(!ShardName.isFinal(ShardName.key(forEntryBytes: long)) && ShardName.isOverlong(ShardName.key(forEntryBytes: long)))
        #expect(ShardName.isFinal(ShardName.key(forEntryBytes: [UInt8](repeating: 0xFF, count: 72) + Array(".zst".utf8))))
        #expect(ShardName.isFinal(String(repeating: "x", count: 217) + ".zst") && !ShardName.isFinal(String(repeating: "x", count: 218) + ".zst"))
        #expect(!ShardName.isOverlong(String(repeating: "x", count: 300) + ".zst.part"), "an unfinished name is never overlong")
    }

    /// No name — even a key crafted to decode to `..`, `.`, a `/` or a NUL — is ever more than one path
    /// component: such names are passed to the system as the empty name, which fails.
    @Test func namesNeverLeaveTheirDirectory() throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let inner = dir.sub("inner")
        #expect(mkdir(inner, 0o755) == 0)
        try Files.write([1, 2, 3], to: dir.sub("victim.zst"))
        let handle = try DirectoryHandle(path: inner, create: false)
        for crafted in ["/..%2Fvictim.zst", "/%2E%2E", "/%2E", "/a%00b.zst", "../victim.zst"] {
            #expect(try handle.entry(crafted) == nil, "\(crafted)")
            #expect(throws: FileSystemError.self, "\(crafted)") { _ = try handle.openRegularFile(crafted) }
            try handle.unlink(crafted)  // ENOENT is not an error for unlink; nothing may be removed
        }
        #expect(Files.exists(dir.sub("victim.zst")))
        #expect(Files.exists(inner))
    }

    @Test func inotifyNamesThatAreNotUTF8ComeAsKeys() {
        var bytes: [UInt8] = []
        func le32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
        let name: [UInt8] = [0x61, 0xFF, 0x0A] + Array(".zst".utf8)
        let padded = (name.count + 1 + 3) / 4 * 4
        le32(1); le32(UInt32(IN_MOVED_TO)); le32(0); le32(UInt32(padded))
        bytes += name + [UInt8](repeating: 0, count: padded - name.count)
        let parsed = bytes.withUnsafeBytes { InotifyWatcher.parse($0) }
        #expect(parsed.names == ["/a%FF%0A.zst"])
    }

    /// Log lines stay one line and carry no raw control characters, whatever the metadata holds.
    @Test func logLinesEscapeControlCharacters() {
        let line = JournalLogHandler(journald: true).format(
            level: .warning, message: "shard\nprocessed", metadata: ["shard": "a\u{1b}[2J\r\n<3>forged\u{85}.zst"])
        #expect(!line.unicodeScalars.contains { ShardName.isControl($0) }, "\(line)")
        #expect(line.hasPrefix("<4>shard processed "))
        #expect(line.contains("\\u{1B}[2J"))
    }
}
