#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Logging
import NIOPosix
import SmoothdMetrics
import SmoothdPipeline

/// The spool loop's state; lives on the service's task only.
struct SpoolLoop {
    let service: SpoolService
    let continuation: AsyncStream<SpoolEvent>.Continuation
    let workPool: NIOThreadPool
    let maintenancePool: NIOThreadPool
    var scheduler: ShardScheduler
    var stopping = false
    var abandon = false
    var failure: (any Error)?
    var nextRescan: ContinuousClock.Instant
    var textfileDirty = true
    var lastStatus = ""
    /// Earlier tries of claimed shards that did not commit, by instance.
    var attempts: [String: ShardAttempts] = [:]
    /// Spool entries that could not be claimed (e.g. `rename` refused: another user's file in a sticky spool,
    /// a read-only spool). Each is logged once and tried again only after a backoff (doubling from 30 s to
    /// 15 min), or as soon as the file changes; with `--exit-when-idle`, not again in this run. So an entry the
    /// daemon cannot take never makes it loop.
    var unclaimable: [String: UnclaimableEntry] = [:]
    /// Shards evaluated and waiting for (or in) their group commit; they hold no scheduler slot.
    var committing = 0
    /// Spool scans under way (on the maintenance thread).
    var scansInFlight = 0
    /// Batches of inotify names being looked at (on the maintenance thread).
    var inspectionsInFlight = 0
    /// The scan that just ended was an idle check and found nothing to do (valid for the event that reported it).
    var idleScanFoundNothing = false
    /// A re-open of the output directory is under way.
    var reopeningOutput = false
    /// A check of the spool and output directories is under way (on the maintenance thread).
    var checkingDirectories = false
    /// The last failure to re-open the output directory (logged once until it changes).
    var outputProblem: String?

    /// Unfinished spool files found stale (reported once each).
    var stalePartials: StalePartials
    var configuration: DaemonConfiguration { service.configuration }
    var logger: Logger { service.logger }

    init(service: SpoolService, continuation: AsyncStream<SpoolEvent>.Continuation, workPool: NIOThreadPool, maintenancePool: NIOThreadPool) {
        self.service = service
        self.continuation = continuation
        self.workPool = workPool
        self.maintenancePool = maintenancePool
        let c = service.configuration
        scheduler = ShardScheduler(maxInflight: c.maxInflight, largeThreshold: c.largeShardBytes, maxPending: c.maxPending)
        nextRescan = .now + c.rescanInterval
        stalePartials = StalePartials(threshold: c.stalePartialSeconds)
    }

    /// Queues the shards found claimed at start, then everything in the spool.
    mutating func start() {
        for item in service.reclaimed {
            scheduler.enqueue(.claimed(item), size: item.size)
            logger.info("claimed shard from a previous run will be processed again", metadata: ["shard": "\(item.source)", "instance": "\(item.instance)"])
        }
        rescan(reason: .start)
        dispatch()
        publish()
    }

    /// Handles events until stopped; returns the error that stopped it, if any.
    mutating func run(_ events: AsyncStream<SpoolEvent>) async -> (any Error)? {
        checkIdle()
        if shouldEnd { return failure }
        for await event in events {
            handle(event)
            if !stopping { dispatch() }
            checkIdle()
            publish()
            if shouldEnd { break }
        }
        return failure
    }

    /// Shards being evaluated or committed.
    var inFlight: Int { scheduler.inflight + committing }

    var shouldEnd: Bool { stopping && ((scheduler.inflight == 0 && committing == 0) || abandon) }

    mutating func handle(_ event: SpoolEvent) {
        idleScanFoundNothing = false
        switch event {
        case .watch(.names(let names)):
            detect(names)
        case .watch(.overflow):
            service.metrics.inotifyOverflows.increment()
            logger.warning("inotify queue overflowed; rescanning the spool")
            rescan(reason: .overflow)
        case .watch(.lost(let reason)):
            logger.error("lost the spool watch", metadata: ["reason": "\(reason)"])
            failure = SpoolWatchLostError(reason: reason)
            beginStopping(reason: "spool watch lost")
        case .tick:
            service.health.beat()
            checkDirectories()
            let now = ContinuousClock.now
            if stopping || scansInFlight > 0 {
                // a scan under way sees the spool as it is now
            } else if now >= nextRescan {
                rescan(reason: .periodic)
            } else if scheduler.takeRescanNeed() {
                rescan(reason: .queueFull)
            }
            if service.totals.isStale {
                // Rewriting it blocks on the disk: on the maintenance thread.
                let totals = service.totals
                let pool = maintenancePool
                Task { try? await pool.runIfActive { totals.flushIfNeeded() } }
            }
            if textfileDirty { writeTextfile() }
            let text = service.status.current
            if text != lastStatus, !stopping {
                lastStatus = text
                service.notifier.status(text)
            }
        case .scanned(let reason, let entries):
            scanned(reason, entries)
        case .inspected(let found):
            inspected(found)
        case .partialsScanned(let entries):
            partialsScanned(entries)
        case .claimed(let shard, let name, let result):
            claimed(shard, name, result)
        case .finished(let shard, let result):
            scheduler.finished(shard)
            record(result)
        case .evaluated(let shard):
            scheduler.finished(shard)
            committing += 1
        case .committed(let result):
            committing -= 1
            record(result)
        case .overlongFinished(let shard, let name, let outcome):
            scheduler.finished(shard)
            recordOverlong(name, outcome)
        case .directoriesChecked(let check):
            directoriesChecked(check)
        case .outputReopened(let result):
            reopeningOutput = false
            outputReopened(result)
        case .shutdown:
            beginStopping(reason: "shutdown requested")
            if inFlight > 0 {
                logger.info("waiting for shards in flight", metadata: ["inflight": "\(inFlight)", "grace": "\(configuration.shutdownGrace)"])
                let continuation = self.continuation
                let grace = configuration.shutdownGrace
                Task {
                    try? await Task.sleep(for: grace)
                    continuation.yield(.deadline)
                }
            }
        case .deadline:
            if inFlight > 0 {
                logger.warning("abandoning shards in flight; they stay claimed and are processed again at the next start",
                               metadata: ["inflight": "\(inFlight)"])
            }
            abandon = true
        }
    }

    mutating func beginStopping(reason: String) {
        guard !stopping else { return }
        stopping = true
        service.health.setStopping()
        service.notifier.stopping(status: "stopping: \(reason)")
        logger.info("stopping", metadata: ["reason": "\(reason)"])
    }

    /// With `--exit-when-idle`: once nothing is queued, running or being scanned, scan once more, and stop when
    /// that scan finds nothing.
    mutating func checkIdle() {
        guard configuration.exitWhenIdle, !stopping, scheduler.isIdle, committing == 0, scansInFlight == 0, inspectionsInFlight == 0 else {
            return
        }
        if idleScanFoundNothing {
            beginStopping(reason: "spool drained (--exit-when-idle)")
        } else {
            rescan(reason: .idle)
        }
    }

    /// Updates the gauges and the status line (sent to systemd at most once a second, on ticks).
    mutating func publish() {
        service.metrics.pending.record(scheduler.pendingCount)
        service.metrics.inflight.record(inFlight)
        let ledger = service.totals.snapshot
        service.status.set("\(scheduler.pendingCount) pending, \(inFlight) in flight; \(ledger.shardsOK) ok, \(ledger.shardsFailed) failed in totals")
    }

    /// Writes the textfile on the maintenance thread, without waiting for it.
    mutating func writeTextfile() {
        guard let path = configuration.textfilePath else { return }
        textfileDirty = false
        let metrics = service.metrics, pool = maintenancePool, logger = self.logger
        Task { await metrics.writeTextfile(path: path, on: pool, logger: logger) }
    }

    /// After the loop: refuse further commits, wait for started ones, flush totals and the textfile.
    mutating func finish() async {
        let gate = service.gate, totals = service.totals
        // Both block (the wait sleeps, the flush fsyncs): on the maintenance thread. The pool runs until after
        // this returns; should it have stopped, the work is done here, since the last totals must be written.
        let drain: @Sendable () -> Void = {
            gate.closeAndWait(upTo: .seconds(3))
            totals.flush()
        }
        do {
            try await maintenancePool.runIfActive(drain)
        } catch {
            drain()
        }
        service.metrics.updateTotals(service.totals.snapshot, options: configuration.evaluation.metrics)
        service.metrics.inflight.record(0)
        if let path = configuration.textfilePath {
            await service.metrics.writeTextfile(path: path, on: maintenancePool, logger: logger)
        }
        let ledger = service.totals.snapshot
        logger.info("totals flushed", metadata: ["shards_ok": "\(ledger.shardsOK)", "shards_failed": "\(ledger.shardsFailed)"])
    }
}
