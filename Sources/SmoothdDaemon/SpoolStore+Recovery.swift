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
    ///
    /// The states are merged by group while the files are read (``readRecords(_:in:groupBy:options:)``), so no
    /// state is kept per file; a superseded summary's state is read again and subtracted.
    func rebuildLedger(options: MetricOptions, groupBy: GroupBy = .standard, from directory: DirectoryHandle? = nil) throws
        -> (ledger: TotalsLedger, unreadable: [String], superseded: [(old: String, by: String)])
    {
        let output = directory ?? self.output
        var ledger = TotalsLedger(options: options, groupBy: groupBy)
        var unreadable: [String] = []
        let names = try output.names().sorted().filter { !$0.hasPrefix(".") && ($0.hasSuffix(".summary.json") || $0.hasSuffix(".error.json")) }
        var (reads, partials) = SpoolStore.readRecords(names, in: output, groupBy: groupBy, options: options)
        var summaries: [(instance: String, summary: RecordedSummary, ordinal: Int, name: String)] = []
        summaries.reserveCapacity(names.count)
        var next = 0
        for part in reads.indices {
            // Each part is let go once copied: the reads of every file are never held twice.
            for read in reads[part] {
                let name = names[next]
                next += 1
                switch read {
                case .summary(let summary):
                    let instance = String(name.dropLast(".summary.json".count))
                    summaries.append((instance, summary, ShardName.ordinal(ofInstance: instance), name))
                case .failure(let time): ledger.addFailure(time: time)
                case .unreadable: unreadable.append(name)
                }
            }
            reads[part] = []
        }
        // Arrival order: the order they were committed in (a reused name's instances by ordinal within one millisecond).
        summaries.sort { ($0.summary.time, $0.ordinal, $0.name) < ($1.summary.time, $1.ordinal, $1.name) }
        var sums: [RunKey: StateSum] = [:]
        for part in partials {
            for (group, sum) in part { sums[group, default: StateSum(options: options)].add(sum) }
        }
        partials = []
        var live: [ShardIdentity: Int] = [:]
        var isLive = [Bool](repeating: true, count: summaries.count)
        var superseded: [(old: String, by: String)] = []
        for (index, entry) in summaries.enumerated() {
            if let mismatch = entry.summary.mismatch { throw TotalsMismatchError(file: output.display(entry.name), detail: mismatch) }
            if let old = live.updateValue(index, forKey: entry.summary.placement.identity) {
                isLive[old] = false
                superseded.append((summaries[old].instance, entry.instance))
            }
        }
        for (index, entry) in summaries.enumerated() where !isLive[index] {
            // Its state was merged while reading; the record is read again to take it out (rare: an interrupted supersession).
            guard let state = SpoolStore.recordedState(entry.instance, in: output, groupBy: groupBy),
                  StateCheck(state) == entry.summary.check else {
                throw RecordChangedError(file: output.display(entry.name))
            }
            sums[entry.summary.placement.group]!.remove(state)
        }
        let liveGroups = Set(summaries.indices.lazy.filter { isLive[$0] }.map { summaries[$0].summary.placement.group })
        for group in sums.keys where !liveGroups.contains(group) {
            sums[group] = nil  // every member superseded by one in another group
        }
        ledger.addCounted(summaries.indices.lazy.filter { isLive[$0] }.map { index in
            let entry = summaries[index]
            return (name: entry.instance, placement: entry.summary.placement, check: entry.summary.check, time: entry.summary.time)
        }, sums: sums)
        return (ledger, unreadable, superseded)
    }

    /// The state of the summary record of `instance` in `directory`, if it can be read and placed.
    static func recordedState(_ instance: String, in directory: DirectoryHandle, groupBy: GroupBy) -> MetricAccumulator? {
        readRecord(ShardName.summaryFile(instance), in: directory, groupBy: groupBy).state
    }
}

/// A summary superseded at start changed or vanished between the two reads of it.
struct RecordChangedError: Error, CustomStringConvertible {
    /// The summary file.
    var file: String
    /// A readable message.
    var description: String { "\(file): changed or removed while the totals were rebuilt at start (read twice, not the same state)" }
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
    /// order of `names`, in consecutive parts), and merges the summaries' states of `options` by group, one sum per part of the work (no
    /// state is kept per file): at start this is most of the time before READY.
    static func readRecords(_ names: [String], in directory: DirectoryHandle, groupBy: GroupBy, options: MetricOptions)
        -> (reads: [[RecordRead]], sums: [[RunKey: StateSum]])
    {
        let chunks = min(names.count, max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) * 8)
        let parts = Mutex([(reads: [RecordRead], sums: [RunKey: StateSum])?](repeating: nil, count: chunks))
        DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
            var reads: [RecordRead] = []
            var sums: [RunKey: StateSum] = [:]
            var keys = RunKeyTable()
            for index in (names.count * chunk / chunks)..<(names.count * (chunk + 1) / chunks) {
                var (read, state) = readRecord(names[index], in: directory, groupBy: groupBy)
                if case .summary(var summary) = read, let state {
                    summary.placement = keys.shared(summary.placement)
                    read = .summary(summary)
                    do throws(TotalsMismatchError) {
                        try TotalsLedger.check(state, options: options, file: names[index])
                        sums[summary.placement.group, default: StateSum(options: options)].add(state)
                    } catch {
                        summary.mismatch = error.detail
                        read = .summary(summary)
                    }
                }
                reads.append(read)
            }
            parts.withLock { $0[chunk] = (reads, sums) }
        }
        let all = parts.withLock { $0 }.map { $0! }
        return (all.map(\.reads), all.map(\.sums))
    }

    /// One record of ``readRecords(_:in:groupBy:options:)``, with a summary's state.
    static func readRecord(_ name: String, in directory: DirectoryHandle, groupBy: GroupBy) -> (read: RecordRead, state: MetricAccumulator?) {
        guard let bytes = try? directory.readFile(name), let record = try? JSONValue.parse(utf8: bytes, keepingMembers: recordMembers) else {
            return (.unreadable, nil)
        }
        if name.hasSuffix(".summary.json") {
            guard let (summary, state) = RecordedSummary.read(record, groupBy: groupBy) else { return (.unreadable, nil) }
            return (.summary(summary), state)
        }
        guard let time = record["failed_at"]?.stringValue else { return (.unreadable, nil) }
        return (.failure(time: time), nil)
    }
}

/// What totals need of a `NAME.summary.json` besides its state: its time and its placement, made again from its
/// shard name and meta (or `placement_meta` when meta was omitted) under the current group-by.
struct RecordedSummary: Sendable {
    /// `processed_at`.
    var time: String
    /// Its group, run and identity.
    var placement: ShardPlacement
    /// Figures of its state, to check it when it is read again.
    var check: StateCheck
    /// Why its state cannot be merged into the totals (other options), if it cannot.
    var mismatch: String?

    /// The summary in `record` and its state, or nil when it is not one or breaks a run rule under `groupBy`.
    static func read(_ record: JSONValue, groupBy: GroupBy) -> (RecordedSummary, MetricAccumulator)? {
        guard let state = record["state"], let accumulator = try? MetricAccumulator(jsonState: state),
              let time = record["processed_at"]?.stringValue, let shard = record["shard"]?.stringValue
        else { return nil }
        let meta = record["placement_meta"] ?? record["meta"]
        guard case .success(let placement) = ShardPlacement.place(shard: shard, meta: meta == .null ? nil : meta, groupBy: groupBy) else {
            return nil
        }
        return (RecordedSummary(time: time, placement: placement, check: StateCheck(accumulator)), accumulator)
    }
}
