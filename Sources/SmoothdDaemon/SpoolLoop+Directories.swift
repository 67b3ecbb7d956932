#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Logging
import NIOPosix
import SmoothdMetrics
import SmoothdPipeline

extension SpoolLoop {
    /// Once a second: a spool directory that was deleted (`rm -rf` leaves the open descriptor alive and sends no
    /// inotify event) or replaced stops the daemon with an error, so that a restart watches the directory its
    /// path names now; a deleted or replaced output directory is opened again (created when missing). The `stat`
    /// calls block (a hung network mount): on the maintenance thread, reported as
    /// ``SpoolEvent/directoriesChecked(_:)``; one check at a time.
    mutating func checkDirectories() {
        guard !stopping, !checkingDirectories else { return }
        checkingDirectories = true
        let store = service.store
        let checkOutput = !reopeningOutput
        let continuation = self.continuation
        let pool = maintenancePool
        Task {
            let check = try? await pool.runIfActive {
                DirectoryCheck(spool: store.spool.pathStatus(), output: checkOutput ? store.output.pathStatus() : nil)
            }
            continuation.yield(.directoriesChecked(check))
        }
    }

    /// Acts on a directory check; `nil` when the maintenance thread had stopped.
    mutating func directoriesChecked(_ check: DirectoryCheck?) {
        checkingDirectories = false
        guard !stopping, let check else { return }
        let spool = service.store.spool
        switch check.spool {
        case .intact:
            break
        case .deleted:
            spoolLost("the spool directory \(spool.path) was deleted")
            return
        case .replaced:
            spoolLost("the spool directory \(spool.path) was moved away or replaced; it is no longer the directory at that path")
            return
        }
        guard !reopeningOutput, let status = check.output, status != .intact else { return }
        reopeningOutput = true
        if outputProblem == nil {
            let what = status == .deleted ? "deleted" : "moved away or replaced"
            logger.warning("the output directory was \(what); opening it again (created when missing) and rebuilding the totals from the records in it",
                           metadata: ["output": "\(service.store.outputPath)"])
        }
        let store = service.store, totals = service.totals, gate = service.gate
        let options = configuration.evaluation.metrics
        let continuation = self.continuation
        let pool = maintenancePool
        Task {
            let result: Result<OutputReopenReport, any Error>
            do {
                result = .success(try await pool.runIfActive {
                    // No commit may run while the directory and the totals are swapped: a record written to the
                    // old directory must not be counted in the new totals.
                    try gate.exclusively {
                        let (handle, lock) = try store.openOutputAgain()
                        let (ledger, unreadable, _) = try store.rebuildLedger(options: options, groupBy: totals.groupBy, from: handle)
                        store.installOutput(handle, lock: lock)
                        totals.replace(ledger: ledger, output: handle)
                        return OutputReopenReport(ledger: ledger, unreadable: unreadable)
                    }
                })
            } catch {
                result = .failure(error)
            }
            continuation.yield(.outputReopened(result))
        }
    }

    mutating func spoolLost(_ reason: String) {
        logger.error("lost the spool directory; exiting so that a restart watches the directory at its path", metadata: ["reason": "\(reason)"])
        service.health.setProblem(reason)
        failure = SpoolWatchLostError(reason: reason)
        beginStopping(reason: "spool directory lost")
    }

    mutating func outputReopened(_ result: Result<OutputReopenReport, any Error>) {
        switch result {
        case .success(let report):
            outputProblem = nil
            service.health.setProblem(nil)
            for name in report.unreadable {
                logger.warning("record cannot be read; not counted in totals", metadata: ["file": "\(name)"])
            }
            logger.notice("output directory opened again; totals rebuilt from its records", metadata: [
                "output": "\(service.store.outputPath)", "shards_ok": "\(report.ledger.shardsOK)", "shards_failed": "\(report.ledger.shardsFailed)",
            ])
            service.metrics.updateTotals(report.ledger, options: configuration.evaluation.metrics)
            textfileDirty = true
        case .failure(let error):
            let message = "the output directory \(service.store.outputPath) is gone and cannot be opened again: \(error)"
            if outputProblem != message {
                logger.error("cannot open the output directory again; retrying every second", metadata: ["error": "\(error)"])
                outputProblem = message
            }
            service.health.setProblem(message)
        }
    }
}

/// What a directory check found: whether the spool and (unless a re-open was under way) the output directory
/// are still the directories their paths name.
struct DirectoryCheck: Sendable {
    /// The spool directory.
    var spool: DirectoryPathStatus
    /// The output directory; `nil` when it was not checked.
    var output: DirectoryPathStatus?
}
