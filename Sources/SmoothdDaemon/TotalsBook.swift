import Logging
import SmoothdJSON
import SmoothdMetrics
import Synchronization

/// The in-memory ledger shared by the shard workers, and `OUTPUT/totals.json`, rewritten atomically after each
/// change under the same lock, so writes never go out of order.
///
/// `Sendable`: the ledger is only reached through its `Mutex`; the other properties are immutable.
final class TotalsBook: Sendable {
    /// The totals file's name in the output directory.
    static let fileName = "totals.json"

    private struct State {
        var ledger: TotalsLedger
        /// Instances whose record this run has counted but whose commit has not finished (the shard is still in
        /// the work directory). Records of earlier runs are counted by the ledger rebuilt at start; finished
        /// commits are forgotten, so the set stays as small as the number of shards in flight or in retry.
        var recorded: Set<String> = []
        /// The last write of `totals.json` failed (disk full, read-only): it is written again at the next change
        /// or ``flushIfNeeded()``.
        var stale = false
        /// The output directory `totals.json` is written to (replaced by ``replace(ledger:output:)``).
        var output: DirectoryHandle
    }

    private let state: Mutex<State>
    private let options: MetricOptions
    private let logger: Logger

    /// Starts from `ledger` (rebuilt from the output directory).
    init(ledger: TotalsLedger, output: DirectoryHandle, options: MetricOptions, logger: Logger) {
        self.state = Mutex(State(ledger: ledger, output: output))
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

    /// Merges a committed summary and rewrites `totals.json`.
    func recordSuccess(_ accumulator: MetricAccumulator, time: String, file: String, instance: String? = nil) {
        state.withLock { state in
            do {
                try state.ledger.addSuccess(accumulator, time: time, file: file)
            } catch {
                logger.error("summary not merged into totals", metadata: ["file": "\(file)", "error": "\(error)"])
                return
            }
            if let instance { state.recorded.insert(instance) }
            write(&state)
        }
    }

    /// Counts a committed error record and rewrites `totals.json`.
    func recordFailure(time: String, instance: String? = nil) {
        state.withLock { state in
            state.ledger.addFailure(time: time)
            if let instance { state.recorded.insert(instance) }
            write(&state)
        }
    }

    /// Starts again from `ledger`, rebuilt from the records in a re-opened output directory, writes `totals.json`
    /// there and forgets the commits in progress (their records were in the old directory). The caller makes sure
    /// no commit runs meanwhile (``CommitGate/exclusively(_:)``).
    func replace(ledger: TotalsLedger, output: DirectoryHandle) {
        state.withLock { state in
            state = State(ledger: ledger, output: output)
            write(&state)
        }
    }

    /// Rewrites `totals.json` from the current ledger.
    func flush() {
        state.withLock { write(&$0) }
    }

    /// Rewrites `totals.json` if its last write failed.
    func flushIfNeeded() {
        state.withLock { state in
            if state.stale { write(&state) }
        }
    }

    private func write(_ state: inout State) {
        let text = state.ledger.json(options: options).serialized(pretty: true) + "\n"
        do {
            try state.output.writeAtomically(TotalsBook.fileName, bytes: Array(text.utf8))
            if state.stale { logger.notice("totals written again after an earlier failure") }
            state.stale = false
        } catch {
            if !state.stale { logger.error("cannot write totals; retrying at the next change or tick", metadata: ["error": "\(error)"]) }
            state.stale = true
        }
    }
}
