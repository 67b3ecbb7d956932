#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Dispatch
import SmoothdJSON
import SmoothdMetrics
import SmoothdRuns
import Synchronization

/// What the start-up reconciliation found.
struct RecoveryReport: Sendable, Equatable {
    /// Temporary files from interrupted writes, removed.
    var removedTemporaryFiles: [String] = []
    /// Claimed shards whose record existed: their commit was completed (instance names).
    var completedCommits: [String] = []
    /// Claimed shards without a record: they are processed again from the start.
    var reclaimed: [WorkItem] = []
    /// Entries in the work directory that are not regular files (left alone).
    var strayEntries: [String] = []
}

extension SpoolStore {
    /// Reconciles the directories after any stop, clean or not: removes temporary files, completes commits whose
    /// record was written, and returns the claimed shards that must be processed again.
    func recover() throws(FileSystemError) -> RecoveryReport {
        var report = RecoveryReport()
        for name in try output.names() where DirectoryHandle.isTemporaryName(name) {
            try output.unlink(name)
            report.removedTemporaryFiles.append(name)
        }
        if !report.removedTemporaryFiles.isEmpty { try output.sync() }
        for name in try work.names().sorted() {
            guard !name.hasPrefix(".") else { continue }
            guard let info = try work.entry(name), info.kind == .regular else {
                report.strayEntries.append(name)
                continue
            }
            let item = WorkItem(source: ShardName.source(ofInstance: name), instance: name, size: info.size)
            if try output.exists(ShardName.summaryFile(name)) {
                try finishCommit(item, succeeded: true)
                report.completedCommits.append(name)
            } else if try output.exists(ShardName.errorFile(name)) {
                try finishCommit(item, succeeded: false)
                report.completedCommits.append(name)
            } else {
                report.reclaimed.append(item)
            }
        }
        return report
    }

    /// Rebuilds the totals from the records in the output directory: every `*.summary.json` placed in its group
    /// (a later record of one identity supersedes an earlier one, by `processed_at`, then by name), every
    /// `*.error.json` counted. Records that cannot be read or placed are reported in `unreadable` and not counted.
    /// `superseded` lists summaries still in the directory although a later one superseded them (a supersession a
    /// crash or an I/O error interrupted; ``moveSuperseded(_:)`` finishes it), as (old, new) record names.
    /// `from` reads another directory than the current output (one about to replace it).
    func rebuildLedger(options: MetricOptions, groupBy: GroupBy = .standard, from directory: DirectoryHandle? = nil) throws
        -> (ledger: TotalsLedger, unreadable: [String], superseded: [(old: String, by: String)])
    {
        let output = directory ?? self.output
        var ledger = TotalsLedger(options: options, groupBy: groupBy)
        var unreadable: [String] = []
        var summaries: [(name: String, summary: RecordedSummary)] = []
        let names = try output.names().sorted().filter { !$0.hasPrefix(".") && ($0.hasSuffix(".summary.json") || $0.hasSuffix(".error.json")) }
        for (name, read) in zip(names, SpoolStore.readRecords(names, in: output, groupBy: groupBy)) {
            switch read {
            case .summary(let summary): summaries.append((name, summary))
            case .failure(let time): ledger.addFailure(time: time)
            case .unreadable: unreadable.append(name)
            }
        }
        // Arrival order: the order they were committed in (a reused name's instances by ordinal within one millisecond).
        let instances = summaries.map { entry in
            let instance = String(entry.name.dropLast(".summary.json".count))
            return (instance: instance, summary: entry.summary, ordinal: ShardName.ordinal(ofInstance: instance), name: entry.name)
        }.sorted { ($0.summary.time, $0.ordinal, $0.name) < ($1.summary.time, $1.ordinal, $1.name) }
        var superseded: [(old: String, by: String)] = []
        for entry in instances {
            if let old = try ledger.addSuccess(entry.summary.accumulator, name: entry.instance, placement: entry.summary.placement,
                                               time: entry.summary.time, file: output.display(entry.name)) {
                superseded.append((old.name, entry.instance))
            }
        }
        return (ledger, unreadable, superseded)
    }
}

/// A record read back at start.
enum RecordRead: Sendable {
    case summary(RecordedSummary)
    /// An error record's `failed_at`.
    case failure(time: String)
    /// Cannot be read, parsed or placed: not counted.
    case unreadable
}

extension SpoolStore {
    /// The members of a summary the totals need (``RecordedSummary``); the rest (the report) is checked, not built.
    static let recordMembers: Set<String> = ["state", "processed_at", "shard", "meta", "placement_meta", "failed_at"]

    /// Reads and parses the records `names` of `directory` on every core (each file on its own; the results in the
    /// order of `names`): at start this is most of the time before READY.
    static func readRecords(_ names: [String], in directory: DirectoryHandle, groupBy: GroupBy) -> [RecordRead] {
        let chunks = min(names.count, max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) * 8)
        let parts = Mutex([[RecordRead]?](repeating: nil, count: chunks))
        DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
            var part: [RecordRead] = []
            for index in (names.count * chunk / chunks)..<(names.count * (chunk + 1) / chunks) {
                part.append(readRecord(names[index], in: directory, groupBy: groupBy))
            }
            parts.withLock { $0[chunk] = part }
        }
        return parts.withLock { $0 }.flatMap { $0! }
    }

    /// One record of ``readRecords(_:in:groupBy:)``.
    static func readRecord(_ name: String, in directory: DirectoryHandle, groupBy: GroupBy) -> RecordRead {
        guard let bytes = try? directory.readFile(name), let record = try? JSONValue.parse(utf8: bytes, keepingMembers: recordMembers) else {
            return .unreadable
        }
        if name.hasSuffix(".summary.json") {
            guard let summary = RecordedSummary(record, groupBy: groupBy) else { return .unreadable }
            return .summary(summary)
        }
        guard let time = record["failed_at"]?.stringValue else { return .unreadable }
        return .failure(time: time)
    }
}

/// What totals need of a `NAME.summary.json`: its state, its time and its placement, made again from its shard
/// name and meta (or `placement_meta` when meta was omitted) under the current group-by.
struct RecordedSummary: Sendable {
    /// The exact metric state.
    var accumulator: MetricAccumulator
    /// `processed_at`.
    var time: String
    /// Its group, run and identity.
    var placement: ShardPlacement

    /// The summary in `record`, or nil when it is not one or breaks a run rule under `groupBy`.
    init?(_ record: JSONValue, groupBy: GroupBy) {
        guard let state = record["state"], let accumulator = try? MetricAccumulator(jsonState: state),
              let time = record["processed_at"]?.stringValue, let shard = record["shard"]?.stringValue
        else { return nil }
        let meta = record["placement_meta"] ?? record["meta"]
        guard case .success(let placement) = ShardPlacement.place(shard: shard, meta: meta == .null ? nil : meta, groupBy: groupBy) else {
            return nil
        }
        self.accumulator = accumulator
        self.time = time
        self.placement = placement
    }
}
