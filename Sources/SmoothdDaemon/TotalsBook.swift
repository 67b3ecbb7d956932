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

    private let ledger: Mutex<TotalsLedger>
    private let output: DirectoryHandle
    private let options: MetricOptions
    private let logger: Logger

    /// Starts from `ledger` (rebuilt from the output directory).
    init(ledger: TotalsLedger, output: DirectoryHandle, options: MetricOptions, logger: Logger) {
        self.ledger = Mutex(ledger)
        self.output = output
        self.options = options
        self.logger = logger
    }

    /// A copy of the current ledger.
    var snapshot: TotalsLedger { ledger.withLock { $0 } }

    /// Merges a committed summary and rewrites `totals.json`.
    func recordSuccess(_ accumulator: MetricAccumulator, time: String, file: String) {
        ledger.withLock { ledger in
            do {
                try ledger.addSuccess(accumulator, time: time, file: file)
            } catch {
                logger.error("summary not merged into totals", metadata: ["file": "\(file)", "error": "\(error)"])
                return
            }
            write(ledger)
        }
    }

    /// Counts a committed error record and rewrites `totals.json`.
    func recordFailure(time: String) {
        ledger.withLock { ledger in
            ledger.addFailure(time: time)
            write(ledger)
        }
    }

    /// Rewrites `totals.json` from the current ledger.
    func flush() {
        ledger.withLock { write($0) }
    }

    private func write(_ ledger: TotalsLedger) {
        let text = ledger.json(options: options).serialized(pretty: true) + "\n"
        do {
            try output.writeAtomically(TotalsBook.fileName, bytes: Array(text.utf8))
        } catch {
            logger.error("cannot write totals", metadata: ["error": "\(error)"])
        }
    }
}
