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
    /// Reports one finished shard.
    mutating func record(_ result: ClaimDisposition) {
        let item = result.item
        let metrics = service.metrics
        var meta: Logger.Metadata = ["shard": "\(item.source)"]
        if item.instance != item.source { meta["instance"] = "\(item.instance)" }
        switch result {
        case .succeeded(_, let record, let seconds):
            let summary = record.entry.summary
            attempts[item.instance] = nil
            service.health.setProblem(nil)
            metrics.shardsOK.increment()
            metrics.rows.increment(by: Int64(clamping: summary.accumulator.rows))
            metrics.countedRows.increment(by: Int64(clamping: summary.accumulator.countedRows))
            metrics.compressedBytes.increment(by: Int64(clamping: summary.compressedBytes))
            metrics.payloadBytes.increment(by: Int64(clamping: summary.payloadBytes))
            metrics.duration.recordNanoseconds(Int64(seconds * 1e9))
            metrics.lastSuccess.record(WallClock.now())
            meta["rows"] = "\(summary.accumulator.rows)"
            meta["seconds"] = "\(rounded(seconds))"
            meta["group"] = "\(record.group)"
            logger.info("shard processed", metadata: meta)
            if summary.accumulator.nonfiniteRows > 0 {
                metrics.nonfiniteRows.increment(by: Int64(clamping: summary.accumulator.nonfiniteRows))
                let fraction = Double(summary.accumulator.nonfiniteRows) / Double(max(1, summary.accumulator.rows))
                let message: Logger.Message = "shard has rows with a non-finite logit; they are left out of every metric (PyTorch would give NaN); --fail-on-nonfinite rejects such shards"
                logger.warning(message, metadata: [
                        "shard": "\(item.source)", "nonfinite_rows": "\(summary.accumulator.nonfiniteRows)",
                        "rows": "\(summary.accumulator.rows)", "fraction": "\(fraction)",
                    ])
            }
            if let completeness = record.completedGroup {
                logger.notice("group is complete: every rank it states is present", metadata: [
                    "group": "\(record.group)", "expected": "\(completeness.expected)", "present": "\(completeness.present)",
                ])
            }
            if let (old, identity) = record.superseded {
                metrics.supersededRecords.increment()
                logger.warning("re-run supersedes an earlier record; only the newer is counted, the older moved to superseded/", metadata: [
                    "shard": "\(item.source)", "instance": "\(item.instance)", "superseded": "\(old)", "identity": "\(identity)",
                ])
            }
            textfileDirty = true
        case .failed(_, let record):
            attempts[item.instance] = nil
            service.health.setProblem(nil)
            metrics.shardsFailed.increment()
            metrics.compressedBytes.increment(by: Int64(clamping: record.compressedBytes))
            metrics.duration.recordNanoseconds(Int64(record.processingSeconds * 1e9))
            meta["reason"] = "\(record.reason)"
            meta["kind"] = "\(record.kind)"
            if let offset = record.offset { meta["offset"] = "\(offset)" }
            logger.warning("invalid shard quarantined in failed/", metadata: meta)
            textfileDirty = true
        case .completedEarlierCommit(_, let succeeded):
            // Its record was written in this run, by an attempt whose commit then failed: count it now.
            attempts[item.instance] = nil
            service.health.setProblem(nil)
            (succeeded ? metrics.shardsOK : metrics.shardsFailed).increment()
            textfileDirty = true
            meta["result"] = succeeded ? "ok" : "failed"
            logger.info("completed the commit of a shard whose record an earlier attempt wrote", metadata: meta)
        case .retry(_, let error):
            metrics.commitErrors.increment()
            let attempts = countFailure(of: item, \.commitFailures, meta: &meta)
            service.health.setProblem("commit failed: \(error)")
            meta["error"] = "\(error)"
            if configuration.exitWhenIdle, attempts >= 5 {
                logger.error("giving up on shard after repeated commit errors", metadata: meta)
                failure = CommitRetriesExhaustedError(shard: item.instance, lastError: "\(error)")
                beginStopping(reason: "commit errors")
                return
            }
            retryLater(item, after: attempts, .commit, meta: &meta)
            logger.error("cannot commit shard; it stays claimed and is retried", metadata: meta)
        case .retryRead(_, let error):
            metrics.readErrors.increment()
            meta["error"] = "\(error)"
            retryLater(item, after: countFailure(of: item, \.readFailures, meta: &meta), .read, meta: &meta)
            logger.error("cannot read shard; it stays claimed and is retried", metadata: meta)
        case .unsettled(_, let what):
            metrics.unsettled.increment()
            meta["change"] = "\(what)"
            retryLater(item, after: countFailure(of: item, \.changes, meta: &meta), .unsettled, meta: &meta)
            logger.warning("shard is still being written (it changed while it was read); evaluating it again later", metadata: meta)
        case .abandoned:
            logger.info("shard abandoned at shutdown; it will be processed again at the next start", metadata: meta)
        case .ignored:
            logger.notice("spool entry is not a regular file; left alone", metadata: meta)
        }
        metrics.updateTotals(service.totals.snapshot, options: configuration.evaluation.metrics)
    }

    /// Counts one more failed try of `item` under `field` of its attempts; returns the count (also put in `meta`).
    private mutating func countFailure(of item: WorkItem, _ field: WritableKeyPath<ShardAttempts, Int>, meta: inout Logger.Metadata) -> Int {
        var tries = attempts[item.instance] ?? ShardAttempts()
        tries[keyPath: field] += 1
        attempts[item.instance] = tries
        meta["attempt"] = "\(tries[keyPath: field])"
        return tries[keyPath: field]
    }

    /// Queues the claimed `item` again once `backoff` has passed for `failures` failures (not while stopping: it
    /// stays claimed for the next start); the delay goes into `meta`.
    private mutating func retryLater(_ item: WorkItem, after failures: Int, _ backoff: Backoff, meta: inout Logger.Metadata) {
        let delay = backoff.delay(afterFailures: failures)
        meta["retry_in_seconds"] = "\(delay.seconds)"
        if !stopping {
            scheduler.enqueue(.claimed(item), size: item.size, notBefore: .now + delay)
        }
    }

    /// Reports the quarantine of a shard whose name is too long (``SpoolStore/quarantineOverlong(_:totals:gate:)``).
    mutating func recordOverlong(_ name: String, _ outcome: OverlongOutcome) {
        switch outcome {
        case .quarantined(let item, let compressedBytes):
            unclaimable[name] = nil
            service.metrics.overlongNames.increment()
            service.metrics.shardsFailed.increment()
            service.metrics.compressedBytes.increment(by: Int64(clamping: compressedBytes))
            logger.warning("shard name is too long; quarantined in failed/ under a shortened name", metadata: [
                "shard": "\(item.source)", "instance": "\(item.instance)", "bytes": "\(item.source.utf8.count)",
                "limit": "\(ShardName.maximumLength)",
            ])
            textfileDirty = true
            service.metrics.updateTotals(service.totals.snapshot, options: configuration.evaluation.metrics)
        case .vanished, .abandoned:
            break
        case .failed(let failure):
            noteUnclaimable(name, failure)
        }
    }
}
