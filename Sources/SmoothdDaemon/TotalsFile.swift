import Logging
import SmoothdJSON
import SmoothdMetrics
import SmoothdRuns
import Synchronization

/// The in-memory ledger shared by the shard workers, and `OUTPUT/totals.json`, rewritten atomically after each
/// change.
///
/// Two locks, so that reading the ledger (the spool loop does, after every shard) never waits for a disk: `state`
/// holds the ledger and is held only to change or copy it; `file` serializes the writes of `totals.json` and is held
/// across the write and its `fsync`s, by worker or maintenance threads only. A writer takes `file`, then copies the
/// ledger under `state`, so the copy it writes is at least as new as any written before it; each change is numbered,
/// and a writer whose change is already in the file (a later writer wrote it) does not write again. Lock order:
/// `file`, then `state`.
///
/// `Sendable`: the mutable parts are only reached through their `Mutex`es; the other properties are immutable.
final class TotalsFile: Sendable {
    /// The totals file's name in the output directory.
    static let fileName = "totals.json"

    private struct State {
        var ledger: TotalsLedger
        /// Changes made to `ledger` (its version; the file records which version it holds).
        var version = 0
        /// Instances whose record this run has counted but whose commit has not finished (the shard is still in
        /// the work directory). Records of earlier runs are counted by the ledger rebuilt at start; finished
        /// commits are forgotten, so the set stays as small as the number of shards in flight or in retry.
        var recorded: Set<String> = []
        /// The output directory `totals.json` is written to (replaced by ``replace(ledger:output:)``).
        var output: DirectoryHandle
        /// The last write of `totals.json` failed (disk full, read-only): it is written again at the next change
        /// or ``flushIfNeeded()``. Set by writers, read by anyone.
        var stale = false
    }

    private struct FileState {
        /// The ledger version in `totals.json` (-1: not written by this run).
        var written = -1
    }

    private let state: Mutex<State>
    private let file = Mutex(FileState())
    private let options: MetricOptions
    private let logger: Logger

    /// Starts from `ledger` (rebuilt from the output directory).
    init(ledger: TotalsLedger, output: DirectoryHandle, options: MetricOptions, logger: Logger) {
        self.state = Mutex(State(ledger: ledger, output: output))
        groupBy = ledger.runs.groupBy
        self.options = options
        self.logger = logger
    }

    /// A copy of the current ledger.
    var snapshot: TotalsLedger { state.withLock { $0.ledger } }

    /// Whether the last write of `totals.json` failed (it lags behind the records until the next good write).
    var isStale: Bool { state.withLock { $0.stale } }

    /// Whether this run has counted the record of `instance` (and its commit has not finished yet).
    func hasRecorded(_ instance: String) -> Bool { state.withLock { $0.recorded.contains(instance) } }

    /// The commit of `instance` finished (the shard left the work directory): no later attempt can meet its
    /// record again, so it need not be remembered.
    func commitFinished(_ instance: String) { _ = state.withLock { $0.recorded.remove(instance) } }

    /// The group-by of the ledger.
    let groupBy: GroupBy

    /// What merging a summary changed: the live shard it superseded, and whether its group became complete.
    struct Merged: Sendable {
        /// The live shard of the same identity it replaced, if any.
        var superseded: LiveRuns.Member?
        /// The group's completeness when this summary completed it (no rank missing now, one missing before).
        var completed: Completeness?
    }

    /// One committed record to count (see ``record(_:syncDirectory:)``).
    enum Change: Sendable {
        /// The summary `file` of `instance` (its record name), to merge.
        case success(MetricAccumulator, placement: ShardPlacement, time: String, file: String, instance: String)
        /// An error record (of `instance`, when it is a shard's).
        case failure(time: String, instance: String?)
    }

    /// Merges the committed summary `file` of `instance` (its record name) and rewrites `totals.json`. Blocking
    /// (it writes the file).
    @discardableResult
    func recordSuccess(_ accumulator: MetricAccumulator, placement: ShardPlacement, time: String, file: String, instance: String) -> Merged {
        record([.success(accumulator, placement: placement, time: time, file: file, instance: instance)])[0]
    }

    /// Counts a committed error record and rewrites `totals.json`. Blocking (it writes the file).
    func recordFailure(time: String, instance: String? = nil) {
        record([.failure(time: time, instance: instance)])
    }

    /// Counts the committed records of `changes` (whose records are durable: the ledger is what `/metrics` and the
    /// live report show) under one lock, then rewrites `totals.json` once for all of them. With `syncDirectory:
    /// false` its rename is left for the caller's next `fsync` of the output directory (a group commit makes it
    /// durable with the batch's other renames; until then a crash leaves the previous totals, which the start
    /// rebuilds from the records anyway). Blocking. Returns what each change merged, in order.
    @discardableResult
    func record(_ changes: [Change], syncDirectory: Bool = true) -> [Merged] {
        let merged = state.withLock { state -> [Merged] in
            var merged: [Merged] = []
            merged.reserveCapacity(changes.count)
            for change in changes {
                switch change {
                case .success(let accumulator, let placement, let time, let file, let instance):
                    let before = state.ledger.runs.group(placement.group)?.completeness
                    let superseded: LiveRuns.Member?
                    do {
                        // A superseded summary's state is read back from its record (still in the output directory).
                        let output = state.output, groupBy = self.groupBy
                        let departure = try state.ledger.addSuccess(accumulator, name: instance, placement: placement, time: time, file: file) {
                            SpoolStore.recordedState($0, in: output, groupBy: groupBy)
                        }
                        for lost in departure.uncounted {
                            logger.error("summary changed or unreadable while its group was merged again; no longer counted in totals",
                                         metadata: ["record": "\(lost)"])
                        }
                        superseded = departure.superseded
                    } catch {
                        logger.error("summary not merged into totals", metadata: ["file": "\(file)", "error": "\(error)"])
                        merged.append(Merged())
                        continue
                    }
                    state.recorded.insert(instance)
                    state.version += 1
                    let after = state.ledger.runs.group(placement.group)?.completeness
                    let completed = after.flatMap { $0.isComplete && !(before?.isComplete ?? false) ? $0 : nil }
                    merged.append(Merged(superseded: superseded, completed: completed))
                case .failure(let time, let instance):
                    state.ledger.addFailure(time: time)
                    if let instance { state.recorded.insert(instance) }
                    state.version += 1
                    merged.append(Merged())
                }
            }
            return merged
        }
        file.withLock { write(&$0, force: false, syncDirectory: syncDirectory) }
        return merged
    }

    /// Starts again from `ledger`, rebuilt from the records in a re-opened output directory, writes `totals.json`
    /// there and forgets the commits in progress (their records were in the old directory). The caller makes sure
    /// no commit runs meanwhile (``CommitGate/exclusively(_:)``). Blocking.
    func replace(ledger: TotalsLedger, output: DirectoryHandle) {
        file.withLock { file in
            state.withLock { state in
                state = State(ledger: ledger, version: state.version + 1, output: output)
            }
            write(&file, force: true)
        }
    }

    /// Rewrites `totals.json` from the current ledger. Blocking.
    func flush() {
        file.withLock { write(&$0, force: true) }
    }

    /// Rewrites `totals.json` if its last write failed. Blocking.
    func flushIfNeeded() {
        guard isStale else { return }
        file.withLock { write(&$0, force: false) }
    }

    private func write(_ file: inout FileState, force: Bool, syncDirectory: Bool = true) {
        let (ledger, version, output, stale) = state.withLock { ($0.ledger, $0.version, $0.output, $0.stale) }
        guard force || stale || version > file.written else { return }
        do {
            try output.writeAtomically(TotalsFile.fileName, bytes: ledger.record(options: options).recordBytes, syncDirectory: syncDirectory)
            if stale { logger.notice("totals written again after an earlier failure") }
            file.written = version
            state.withLock { $0.stale = false }
        } catch {
            if !stale { logger.error("cannot write totals; retrying at the next change or tick", metadata: ["error": "\(error)"]) }
            state.withLock { $0.stale = true }
        }
    }
}
