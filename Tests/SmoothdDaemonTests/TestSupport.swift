#if canImport(Glibc)
import Glibc
#endif
import Foundation
import LSHDFormat
import Logging
import SmoothdJSON
import SmoothdMetrics
import SmoothdPipeline
import SmoothdTesting
import Synchronization
import Testing
import Zstd

@testable import SmoothdDaemon

/// A fresh directory under /tmp, removed by `remove()`.
struct TempDirectory {
    let path: String

    init(_ prefix: String = "smoothd-test") {
        var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
        let result = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(result != nil, "mkdtemp failed")
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func sub(_ name: String) -> String { path + "/" + name }

    /// Deletes the directory (kept when `SMOOTHD_TEST_KEEP` is set, for debugging).
    func remove() {
        guard ProcessInfo.processInfo.environment["SMOOTHD_TEST_KEEP"] == nil else { return }
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// Shard bytes built with the project's writer and zstd encoder.
enum ShardFactory {
    /// A valid shard: `rows` rows of `classes` float32 logits, labels in range, a few ignored rows; `metaText`
    /// (default `{"model":"test","seed":SEED}`) as its meta.
    static func valid(rows: Int, classes: Int = 8, seed: UInt64, frames: Int = 1, metaText: String? = nil) throws -> [UInt8] {
        var generator = SplitMix(seed: seed)
        var payload: [UInt8] = []
        let header = ShardHeader(logitDType: .float32, labelDType: .int64, numClasses: classes, ignoreIndex: -100, statedRows: UInt64(rows))
        let sink = ByteSink()
        var writer = try ShardPayloadWriter(header: header, metaText: metaText ?? "{\"model\":\"test\",\"seed\":\(seed)}") { sink.append($0) }
        var written = 0
        let perBlock = max(1, rows / max(1, frames))
        while written < rows {
            let n = min(perBlock, rows - written)
            var labels: [Int64] = []
            var logits: [Float] = []
            for _ in 0..<n {
                labels.append(generator.next() % 10 == 0 ? -100 : Int64(generator.next() % UInt64(classes)))
                for _ in 0..<classes { logits.append(Float(Int(generator.next() % 2001) - 1000) / 250) }
            }
            try writer.writeBlock(labels: labels, logits: logits)
            written += n
        }
        try writer.finish()
        payload = sink.bytes
        return try ZstdCompressor.compressFrame(payload)
    }

    /// An invalid shard: a valid one cut short (truncated before its end marker).
    static func truncated(seed: UInt64) throws -> [UInt8] {
        var generator = SplitMix(seed: seed)
        let header = ShardHeader(logitDType: .float32, labelDType: .int32, numClasses: 4, ignoreIndex: -100)
        let sink = ByteSink()
        var writer = try ShardPayloadWriter(header: header) { sink.append($0) }
        try writer.writeBlock(labels: [0, 1, 2], logits: (0..<12).map { _ in Float(generator.next() % 7) })
        var payload = sink.bytes
        payload.removeLast(5)
        return try ZstdCompressor.compressFrame(payload)
    }

    /// An invalid shard: a label out of range.
    static func badLabel() throws -> [UInt8] {
        let header = ShardHeader(logitDType: .float32, labelDType: .int32, numClasses: 4, ignoreIndex: -100)
        let sink = ByteSink()
        var writer = try ShardPayloadWriter(header: header) { sink.append($0) }
        try writer.writeBlock(labels: [0, 9], logits: [Float](repeating: 0.5, count: 8))
        try writer.finish()
        return try ZstdCompressor.compressFrame(sink.bytes)
    }

    /// Not zstd at all.
    static func garbage() -> [UInt8] { Array("this is not a zstd stream".utf8) }
}

/// Collects bytes from a writer's emit closure.
final class ByteSink {
    var bytes: [UInt8] = []
    func append(_ buffer: UnsafeRawBufferPointer) { bytes.append(contentsOf: buffer) }
}

/// The shared generator, under the name this suite's files use.
typealias SplitMix = SmoothdTesting.SplitMix

/// File helpers.
enum Files {
    /// Writes `bytes` as a producer must: a temporary name in the same directory, then `rename` to `name`.
    static func drop(_ bytes: [UInt8], named name: String, in directory: String) throws {
        let temp = directory + "/." + name + ".\(getpid()).\(UInt32.random(in: 0...UInt32.max)).part"
        try write(bytes, to: temp)
        guard rename(temp, directory + "/" + name) == 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
    }

    /// ``drop(_:named:in:)`` for a name given as raw bytes (which need not be UTF-8).
    static func dropRaw(_ bytes: [UInt8], nameBytes: [UInt8], in directory: String) throws {
        let temp = directory + "/.raw.\(getpid()).\(UInt32.random(in: 0...UInt32.max)).part"
        try write(bytes, to: temp)
        let target = (Array(directory.utf8) + [UInt8(ascii: "/")] + nameBytes + [0]).map { CChar(bitPattern: $0) }
        guard rename(temp, target) == 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
    }

    /// Whether the entry `nameBytes` exists in `directory` (without following a symlink).
    static func existsRaw(_ nameBytes: [UInt8], in directory: String) -> Bool {
        let path = (Array(directory.utf8) + [UInt8(ascii: "/")] + nameBytes + [0]).map { CChar(bitPattern: $0) }
        var st = stat()
        return lstat(path, &st) == 0
    }

    static func write(_ bytes: [UInt8], to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        defer { close(fd) }
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
            offset += n
        }
    }

    static func list(_ directory: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
    }

    /// Hidden entries of an output directory other than the daemon's lock file: temporary files left behind.
    static func leftovers(_ output: String) -> [String] {
        list(output).filter { $0.hasPrefix(".") && $0 != OutputLock.fileName }
    }

    static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    static func json(_ path: String) throws -> JSONValue {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        return try JSONValue.parse(utf8: Array(data))
    }

    static func text(_ path: String) -> String {
        (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    }
}

/// Polls `condition` every 20 ms until it holds or `timeout` seconds pass; returns whether it held.
func eventually(timeout: Double = 30, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = TestClock.seconds() + timeout
    while TestClock.seconds() < deadline {
        if try condition() { return true }
        usleep(20_000)
    }
    return try condition()
}

/// The merge of exactly the records in `output`, computed independently of the daemon's ledger code:
/// summaries' accumulator states merged, error records counted, first/last time the min/max of their times.
/// `options` defaults to what a daemon started without metric flags uses.
func expectedTotals(output: String, options: MetricOptions = MetricOptions()) throws -> JSONValue {
    var accumulator = MetricAccumulator(options: options)
    var ok = 0
    var failed = 0
    var times: [String] = []
    for name in Files.list(output) where !name.hasPrefix(".") {
        if name.hasSuffix(".summary.json") {
            let record = try Files.json(output + "/" + name)
            accumulator.merge(try MetricAccumulator(jsonState: #require(record["state"])))
            times.append(try #require(record["processed_at"]?.stringValue))
            ok += 1
        } else if name.hasSuffix(".error.json") {
            let record = try Files.json(output + "/" + name)
            times.append(try #require(record["failed_at"]?.stringValue))
            failed += 1
        }
    }
    var members = TotalReport(accumulator: accumulator, shardsOK: ok, shardsFailed: failed, options: options).jsonMembers
    members.append(("first_processed_at", times.min().map { .string($0) } ?? .null))
    members.append(("last_processed_at", times.max().map { .string($0) } ?? .null))
    return .object(members)
}

/// `OUTPUT/totals.json` without its `groups` (which ServeRunsTests compare with `eval`'s): the total and the times.
func totalsWithoutGroups(output: String) throws -> JSONValue {
    .object(try Files.json(output + "/totals.json").objectMembers?.filter { $0.0 != "groups" } ?? [])
}

/// Checks that `OUTPUT/totals.json` is exactly the merge of the records that exist.
func expectTotalsMatchRecords(output: String, options: MetricOptions = MetricOptions(), sourceLocation: SourceLocation = #_sourceLocation) throws {
    let totals = try totalsWithoutGroups(output: output)
    let expected = try expectedTotals(output: output, options: options)
    #expect(totals == expected, "totals.json differs from the merge of the summaries", sourceLocation: sourceLocation)
}

// MARK: - Hostile shards

extension ShardFactory {
    /// A payload from raw parts: the 32-byte header (`numClasses` may be anything up to 2^32-1), `meta` bytes,
    /// then `rest` as is (blocks, end marker, or nothing).
    static func rawPayload(classes: UInt32, meta: [UInt8] = [], logitDType: UInt8 = 1, labelDType: UInt8 = 1,
                           ignoreIndex: Int64 = -100, statedRows: UInt64 = 0, rest: [UInt8] = []) -> [UInt8] {
        var bytes = Array("LSHD".utf8)
        func le<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
        le(UInt16(1))
        bytes.append(logitDType)
        bytes.append(labelDType)
        le(classes)
        le(UInt32(meta.count))
        le(ignoreIndex)
        le(statedRows)
        return bytes + meta + rest
    }

    /// A valid shard whose producer metadata is `metaText` (any JSON object text).
    static func withMeta(_ metaText: String, rows: Int = 4, classes: Int = 4) throws -> [UInt8] {
        let header = ShardHeader(logitDType: .float32, labelDType: .int32, numClasses: classes, ignoreIndex: -100)
        let sink = ByteSink()
        var writer = try ShardPayloadWriter(header: header, metaText: metaText) { sink.append($0) }
        try writer.writeBlock(labels: (0..<rows).map { Int64($0 % classes) }, logits: (0..<(rows * classes)).map { Float($0 % 5) })
        try writer.finish()
        return try ZstdCompressor.compressFrame(sink.bytes)
    }

    /// Writes to `path` a decompression bomb: one zstd frame whose payload is a valid shard of `rows` rows of
    /// `classes` float32 logits, every row the same (`row`), every `countedEvery`-th row labelled 1 and the others
    /// `ignore_index`. Compressed from the repeated row, it is about 4 bytes per 128 KiB of payload (zstd's
    /// limit). Returns the payload size.
    @discardableResult
    static func writeBomb(to path: String, classes: Int, rows: Int, countedEvery: Int, row: [Float]) throws -> UInt64 {
        precondition(row.count == classes)
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        defer { close(fd) }
        var pending: [UInt8] = []
        func flush() throws {
            var offset = 0
            while offset < pending.count {
                let n = pending[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
                guard n > 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
                offset += n
            }
            pending.removeAll(keepingCapacity: true)
        }
        let encoder = ZstdCompressor(level: 1)
        var payloadBytes: UInt64 = 0
        func feed(_ bytes: UnsafeRawBufferPointer) throws {
            payloadBytes += UInt64(bytes.count)
            try encoder.write(bytes) { pending.append(contentsOf: $0) }
            if pending.count > 1 << 20 { try flush() }
        }
        var head = rawPayload(classes: UInt32(classes), meta: Array(#"{"kind":"bomb"}"#.utf8), statedRows: UInt64(rows))
        withUnsafeBytes(of: UInt32(rows).littleEndian) { head += $0 }
        for row in 0..<rows {
            withUnsafeBytes(of: (row % countedEvery == 0 ? Int32(1) : Int32(-100)).littleEndian) { head += $0 }
        }
        try head.withUnsafeBytes { try feed($0) }
        let rowsPerFeed = max(1, (4 << 20) / (classes * 4))
        let repeated = LogitEncoding.encode(Array((0..<rowsPerFeed).map { _ in row }.joined()), as: .float32)
        var remainingRows = rows
        try repeated.withUnsafeBytes { buffer in
            while remainingRows > 0 {
                let n = min(rowsPerFeed, remainingRows)
                try feed(UnsafeRawBufferPointer(rebasing: buffer[0..<(n * classes * 4)]))
                remainingRows -= n
            }
        }
        try [UInt8](repeating: 0, count: 4).withUnsafeBytes { try feed($0) }
        try encoder.endFrame { pending.append(contentsOf: $0) }
        try flush()
        return payloadBytes
    }
}

// MARK: - Processes

/// `/proc/PID/status` and `/proc/PID/fd` readings.
enum ProcFS {
    /// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM` …) in bytes, or `nil`.
    static func status(_ pid: Int32, _ field: String) -> UInt64? {
        for line in Files.text("/proc/\(pid)/status").split(separator: "\n") where line.hasPrefix(field + ":") {
            let number = line.dropFirst(field.count + 1).trimmingCharacters(in: .whitespaces).split(separator: " ").first
            return number.flatMap { UInt64($0) }.map { $0 * 1024 }
        }
        return nil
    }

    /// Open file descriptors of `pid`.
    static func openFiles(_ pid: Int32) -> Int { Files.list("/proc/\(pid)/fd").count }
}

/// Whether this process may mount filesystems and change its identity (root in a container that allows it).
enum Privileges {
    static let isRoot = geteuid() == 0
    static let setpriv: String? = ["/usr/bin/setpriv", "/bin/setpriv"].first { access($0, X_OK) == 0 }
    /// The uid/gid the unprivileged daemon runs as in tests (nobody).
    static let unprivilegedID: UInt32 = 65534
    static var canRunAsOtherUser: Bool { isRoot && setpriv != nil }

    /// Mounts a tmpfs of `bytes` at `path` (created); `false` when not permitted.
    static func mountTmpfs(_ path: String, bytes: Int) -> Bool {
        guard isRoot else { return false }
        mkdir(path, 0o755)
        return run("/bin/mount", ["-t", "tmpfs", "-o", "size=\(bytes),mode=0755", "tmpfs", path]) == 0
    }

    /// Remounts the tmpfs at `path` read-only or read-write.
    static func remount(_ path: String, readOnly: Bool) -> Bool {
        run("/bin/mount", ["-o", "remount,\(readOnly ? "ro" : "rw")", path]) == 0
    }

    static func unmount(_ path: String) { _ = run("/bin/umount", ["-l", path]) }

    @discardableResult
    static func run(_ tool: String, _ arguments: [String]) -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return -1 }
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// Whether a user without any of our ids can execute `path` (every directory on the way searchable by others).
    static func executableByOthers(_ path: String) -> Bool {
        var current = URL(fileURLWithPath: path).resolvingSymlinksInPath()
        var st = stat()
        guard stat(current.path, &st) == 0, st.st_mode & S_IXOTH != 0 else { return false }
        while current.path != "/" {
            current.deleteLastPathComponent()
            guard stat(current.path, &st) == 0, st.st_mode & S_IXOTH != 0 else { return false }
        }
        return true
    }
}

/// A logger that drops everything (the tests read files and metrics, not logs).
let silentLogger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

/// An evaluator on one thread, as each of the daemon's slots runs it.
func slotEvaluator(_ options: MetricOptions = MetricOptions()) -> ShardEvaluator {
    ShardEvaluator(options: EvaluationOptions(metrics: options, threads: 1))
}

/// Opens a store on `DIR/spool` and `DIR/out` as the daemon starts: recovery, totals rebuilt from the records and
/// written. Also returns what recovery found and the records that could not be read.
func startStoreReporting(
    _ dir: TempDirectory, faults: FaultInjector? = nil, options: MetricOptions = MetricOptions(), deleteProcessed: Bool = false
) throws -> (store: SpoolStore, totals: TotalsFile, report: RecoveryReport, unreadable: [String]) {
    let store = try SpoolStore(spoolPath: dir.sub("spool"), outputPath: dir.sub("out"), deleteProcessed: deleteProcessed, faults: faults)
    let report = try store.recover()
    let (ledger, unreadable, superseded) = try store.rebuildLedger(options: options)
    for (old, _) in superseded { try store.moveSuperseded(old) }
    let totals = TotalsFile(ledger: ledger, output: store.output, options: options, logger: silentLogger)
    totals.flush()
    return (store, totals, report, unreadable)
}

/// ``startStoreReporting(_:faults:options:deleteProcessed:)`` without the report.
func startStore(_ dir: TempDirectory, faults: FaultInjector? = nil, options: MetricOptions = MetricOptions()) throws -> (SpoolStore, TotalsFile) {
    let started = try startStoreReporting(dir, faults: faults, options: options)
    return (started.store, started.totals)
}

/// Claims `name` from `store`, recording an issue (and throwing) when it is not claimed.
func claim(_ store: SpoolStore, _ name: String) throws -> WorkItem {
    guard case .claimed(let item) = try store.claim(name) else {
        Issue.record("\(name) not claimed")
        throw FileSystemError(operation: "claim", path: name, errorNumber: ENOENT)
    }
    return item
}

/// Elapsed time for the tests' polling loops and messages.
enum TestClock {
    private static let origin = ContinuousClock.now
    /// Seconds since the first call in this process (never jumps).
    static func seconds() -> Double { (ContinuousClock.now - origin).seconds }
}
