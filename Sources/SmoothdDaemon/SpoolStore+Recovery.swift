import SmoothdJSON
import SmoothdMetrics

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

    /// Rebuilds the totals from the records in the output directory: every `*.summary.json` merged exactly,
    /// every `*.error.json` counted. Records that cannot be read are reported in `unreadable` and not counted.
    /// `from` reads another directory than the current output (one about to replace it).
    func rebuildLedger(options: MetricOptions, from directory: DirectoryHandle? = nil) throws -> (ledger: TotalsLedger, unreadable: [String]) {
        let output = directory ?? self.output
        var ledger = TotalsLedger(options: options)
        var unreadable: [String] = []
        for name in try output.names().sorted() where !name.hasPrefix(".") {
            if name.hasSuffix(".summary.json") {
                guard let record = try? JSONValue.parse(utf8: output.readFile(name)),
                      let state = record["state"], let accumulator = try? MetricAccumulator(jsonState: state),
                      let time = record["processed_at"]?.stringValue
                else {
                    unreadable.append(name)
                    continue
                }
                try ledger.addSuccess(accumulator, time: time, file: output.display(name))
            } else if name.hasSuffix(".error.json") {
                guard let record = try? JSONValue.parse(utf8: output.readFile(name)),
                      let time = record["failed_at"]?.stringValue
                else {
                    unreadable.append(name)
                    continue
                }
                ledger.addFailure(time: time)
            }
        }
        return (ledger, unreadable)
    }
}
