#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Logging
import NIOPosix
import Synchronization
import ServiceLifecycle
import SmoothdMetrics
import SmoothdPipeline

/// The spool watch was lost (directory deleted, moved, replaced or unmounted): the service stops with this error so
/// that systemd restarts it on the directory the path names now.
public struct SpoolWatchLostError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Why.
    public var reason: String
    /// A readable message.
    public var description: String { "spool watch lost: \(reason)" }
}

/// A commit kept failing in `--exit-when-idle` mode, so the batch cannot finish.
public struct CommitRetriesExhaustedError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The shard.
    public var shard: String
    /// The last error.
    public var lastError: String
    /// A readable message.
    public var description: String { "giving up on \(shard) after repeated commit errors: \(lastError)" }
}

/// What the spool loop reacts to.
enum SpoolEvent: Sendable {
    case watch(WatchEvent)
    case tick
    case finished(PendingShard, ShardResult)
    case overlongFinished(PendingShard, String, OverlongOutcome)
    case outputReopened(Result<OutputReopenReport, any Error>)
    case shutdown
    case deadline
}

/// The output directory opened again after it was deleted or replaced, and the totals rebuilt from it.
struct OutputReopenReport: Sendable {
    /// The rebuilt totals.
    var ledger: TotalsLedger
    /// Records in it that could not be read (not counted).
    var unreadable: [String]
}

/// Watches the spool, claims shards, runs up to `maxInflight` evaluations on worker threads, and reports results
/// to metrics, logs and systemd. Stops on graceful shutdown (SIGTERM/SIGINT) or, with `--exit-when-idle`,
/// once the spool is drained.
struct SpoolService: Service {
    let configuration: DaemonConfiguration
    let store: SpoolStore
    let totals: TotalsBook
    let gate: CommitGate
    let metrics: DaemonMetrics
    let health: DaemonHealth
    let notifier: SystemdNotifier
    let readiness: ReadinessGate
    let evaluator: ShardEvaluator
    let reclaimed: [WorkItem]
    let status: StatusBoard
    let logger: Logger

    func run() async throws {
        let (events, continuation) = AsyncStream<SpoolEvent>.makeStream()
        // Watch first, then scan: a shard renamed in between is seen by both, and the queue dedups it.
        let watcher = try InotifyWatcher(directory: store.spool.path)
        let watchPool = NIOThreadPool(numberOfThreads: 1)
        watchPool.start()
        let workPool = NIOThreadPool(numberOfThreads: configuration.maxInflight)
        workPool.start()
        // Re-opening a deleted output directory waits for commits in progress: a thread of its own.
        let maintenancePool = NIOThreadPool(numberOfThreads: 1)
        maintenancePool.start()
        let watchTask = Task {
            _ = try? await watchPool.runIfActive { watcher.run { continuation.yield(.watch($0)) } }
        }
        let tickTask = Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                continuation.yield(.tick)
            }
        }

        var loop = SpoolLoop(service: self, continuation: continuation, workPool: workPool, maintenancePool: maintenancePool)
        loop.start()
        readiness.markReady("spool")

        let outcome: (any Error)? = await withGracefulShutdownHandler {
            await loop.run(events)
        } onGracefulShutdown: {
            continuation.yield(.shutdown)
        }

        loop.finish()
        watcher.stop()
        tickTask.cancel()
        _ = await watchTask.value
        try? await watchPool.shutdownGracefully()
        try? await maintenancePool.shutdownGracefully()
        if loop.scheduler.inflight == 0 {
            try? await workPool.shutdownGracefully()
        } else {
            // Abandoned shards: do not wait. The pool stops once their evaluations return (their results are
            // ignored; the gate is closed) or when the process exits; the shards stay claimed and are processed
            // again at the next start.
            workPool.shutdownGracefully { _ in }
        }
        continuation.finish()
        if let outcome { throw outcome }
    }
}

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
    var nextRescan: Double
    var textfileDirty = true
    var lastStatus = ""
    /// Earlier tries of claimed shards that did not commit, by instance.
    var attempts: [String: ShardAttempts] = [:]
    /// Spool entries that could not be claimed (e.g. `rename` refused: another user's file in a sticky spool,
    /// a read-only spool). Each is logged once and tried again only after a backoff (doubling from 30 s to
    /// 15 min), or as soon as the file changes; with `--exit-when-idle`, not again in this run. So an entry the
    /// daemon cannot take never makes it loop.
    var unclaimable: [String: UnclaimableEntry] = [:]
    /// A re-open of the output directory is under way.
    var reopeningOutput = false
    /// The last failure to re-open the output directory (logged once until it changes).
    var outputProblem: String?

    var configuration: DaemonConfiguration { service.configuration }
    var logger: Logger { service.logger }

    init(service: SpoolService, continuation: AsyncStream<SpoolEvent>.Continuation, workPool: NIOThreadPool, maintenancePool: NIOThreadPool) {
        self.service = service
        self.continuation = continuation
        self.workPool = workPool
        self.maintenancePool = maintenancePool
        let c = service.configuration
        scheduler = ShardScheduler(maxInflight: c.maxInflight, largeThreshold: c.largeShardBytes, maxPending: c.maxPending)
        nextRescan = WallClock.monotonic() + c.rescanInterval.seconds
    }

    /// Queues the shards found claimed at start, then everything in the spool.
    mutating func start() {
        for item in service.reclaimed {
            scheduler.enqueue(.claimed(item), size: item.size)
            logger.info("claimed shard from a previous run will be processed again", metadata: ["shard": "\(item.source)", "instance": "\(item.instance)"])
        }
        rescan(reason: "start")
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

    var shouldEnd: Bool { stopping && (scheduler.inflight == 0 || abandon) }

    mutating func handle(_ event: SpoolEvent) {
        switch event {
        case .watch(.names(let names)):
            for name in names { detect(name) }
        case .watch(.overflow):
            service.metrics.inotifyOverflows.increment()
            logger.warning("inotify queue overflowed; rescanning the spool")
            rescan(reason: "overflow")
        case .watch(.lost(let reason)):
            logger.error("lost the spool watch", metadata: ["reason": "\(reason)"])
            failure = SpoolWatchLostError(reason: reason)
            beginStopping(reason: "spool watch lost")
        case .tick:
            service.health.beat()
            checkDirectories()
            let now = WallClock.monotonic()
            if !stopping, now >= nextRescan {
                rescan(reason: "periodic")
            } else if !stopping, scheduler.takeRescanNeed() {
                rescan(reason: "queue had been full")
            }
            service.totals.flushIfNeeded()
            if textfileDirty { writeTextfile() }
            let text = service.status.current
            if text != lastStatus, !stopping {
                lastStatus = text
                service.notifier.status(text)
            }
        case .finished(let shard, let result):
            scheduler.finished(shard)
            record(result)
        case .overlongFinished(let shard, let name, let outcome):
            scheduler.finished(shard)
            recordOverlong(name, outcome)
        case .outputReopened(let result):
            reopeningOutput = false
            outputReopened(result)
        case .shutdown:
            beginStopping(reason: "shutdown requested")
            if scheduler.inflight > 0 {
                logger.info("waiting for shards in flight", metadata: ["inflight": "\(scheduler.inflight)", "grace": "\(configuration.shutdownGrace)"])
                let continuation = self.continuation
                let grace = configuration.shutdownGrace
                Task {
                    try? await Task.sleep(for: grace)
                    continuation.yield(.deadline)
                }
            }
        case .deadline:
            if scheduler.inflight > 0 {
                logger.warning("abandoning shards in flight; they stay claimed and are processed again at the next start",
                               metadata: ["inflight": "\(scheduler.inflight)"])
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

    /// Once a second: a spool directory that was deleted (`rm -rf` leaves the open descriptor alive and sends no
    /// inotify event) or replaced stops the daemon with an error, so that a restart watches the directory its
    /// path names now; a deleted or replaced output directory is opened again (created when missing).
    mutating func checkDirectories() {
        guard !stopping else { return }
        let spool = service.store.spool
        switch spool.pathStatus() {
        case .intact:
            break
        case .deleted:
            spoolLost("the spool directory \(spool.path) was deleted")
            return
        case .replaced:
            spoolLost("the spool directory \(spool.path) was moved away or replaced; it is no longer the directory at that path")
            return
        }
        guard !reopeningOutput else { return }
        let status = service.store.output.pathStatus()
        guard status != .intact else { return }
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
                        let (ledger, unreadable) = try store.rebuildLedger(options: options, from: handle)
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

    /// Reports the quarantine of a shard whose name is too long (``SpoolStore/quarantineOverlong(_:totals:gate:)``).
    mutating func recordOverlong(_ name: String, _ outcome: OverlongOutcome) {
        switch outcome {
        case .quarantined(let item, let facts):
            unclaimable[name] = nil
            service.metrics.overlongNames.increment()
            service.metrics.shardsFailed.increment()
            service.metrics.compressedBytes.increment(by: Int64(clamping: facts.compressedBytes))
            logger.warning("shard name is too long; quarantined in failed/ under a shortened name", metadata: [
                "shard": "\(item.source)", "instance": "\(item.instance)", "bytes": "\(item.source.utf8.count)",
                "limit": "\(ShardName.maximumLength)",
            ])
            textfileDirty = true
            service.metrics.updateTotals(service.totals.snapshot, options: configuration.evaluation.metrics)
        case .vanished, .abandoned:
            break
        case .failed(let error):
            noteUnclaimable(name, error: error)
        }
    }

    /// A name reported by inotify.
    mutating func detect(_ name: String) {
        guard !stopping else { return }
        do {
            guard let info = try service.store.candidate(name), !skipUnclaimable(name, info) else { return }
            if scheduler.enqueue(.spool(name), size: info.size) == .added {
                logger.debug("shard detected", metadata: ["shard": "\(ShardName.display(name))", "bytes": "\(info.size)"])
            }
        } catch {
            logger.warning("cannot inspect spool entry", metadata: ["shard": "\(ShardName.display(name))", "error": "\(error)"])
        }
    }

    /// Whether `name`, which could not be claimed earlier, is still to be left alone for now.
    mutating func skipUnclaimable(_ name: String, _ info: EntryInfo) -> Bool {
        guard let entry = unclaimable[name] else { return false }
        if entry.identity != info.identity {
            unclaimable[name] = nil  // the file changed (new owner, mode or content): try again now
            return false
        }
        if configuration.exitWhenIdle { return true }
        return WallClock.monotonic() < entry.notBefore
    }

    mutating func rescan(reason: String) {
        nextRescan = WallClock.monotonic() + configuration.rescanInterval.seconds
        service.metrics.rescans.increment()
        do {
            var added = 0
            var present: Set<String> = []
            for (name, info) in try service.store.scanSpoolEntries() {
                present.insert(name)
                if skipUnclaimable(name, info) { continue }
                if scheduler.enqueue(.spool(name), size: info.size) == .added { added += 1 }
            }
            unclaimable = unclaimable.filter { present.contains($0.key) }
            logger.debug("rescanned the spool", metadata: ["reason": "\(reason)", "new": "\(added)"])
        } catch {
            logger.error("cannot scan the spool", metadata: ["error": "\(error)"])
        }
    }

    /// Starts shards while slots are free.
    mutating func dispatch() {
        while let shard = scheduler.next(now: WallClock.monotonic()) {
            let item: WorkItem
            switch shard.origin {
            case .claimed(let claimed):
                item = claimed
            case .spool(let name) where ShardName.isOverlong(name):
                startOverlong(shard, name)
                continue
            case .spool(let name):
                do {
                    switch try service.store.claim(name) {
                    case .claimed(let claimed):
                        item = claimed
                        unclaimable[name] = nil
                        if claimed.instance != claimed.source {
                            service.metrics.nameReuses.increment()
                            logger.warning("shard name was already processed; recording it under a distinct name",
                                           metadata: ["shard": "\(claimed.source)", "instance": "\(claimed.instance)"])
                        }
                        if ShardName.isKey(name) {
                            logger.notice("shard name is not printable UTF-8; recorded under its escaped name",
                                          metadata: ["shard": "\(claimed.source)", "instance": "\(claimed.instance)"])
                        }
                        logger.debug("shard claimed", metadata: ["shard": "\(claimed.source)", "instance": "\(claimed.instance)"])
                    case .vanished, .ignored:
                        scheduler.finished(shard)
                        continue
                    }
                } catch {
                    noteUnclaimable(name, error: error)
                    scheduler.finished(shard)
                    continue
                }
            }
            start(shard: shard, item: item)
        }
    }

    /// Remembers a spool entry that could not be claimed; logs it once (at error level), later failures at debug.
    mutating func noteUnclaimable(_ name: String, error: FileSystemError) {
        service.metrics.claimErrors.increment()
        let identity = (try? service.store.spool.entry(name))?.identity ?? FileIdentity(inode: 0, size: 0, modificationNanoseconds: 0, changeNanoseconds: 0)
        var entry = unclaimable[name] ?? UnclaimableEntry(identity: identity, failures: 0, notBefore: 0)
        entry.identity = identity
        entry.failures += 1
        let delay = min(900.0, 30.0 * Double(1 << min(entry.failures - 1, 5)))
        entry.notBefore = WallClock.monotonic() + delay
        unclaimable[name] = entry
        let meta: Logger.Metadata = ["shard": "\(ShardName.display(name))", "error": "\(error)", "retry_in_seconds": "\(configuration.exitWhenIdle ? 0 : delay)"]
        if entry.failures == 1 {
            logger.error("cannot claim shard; it is left in the spool and tried again only after a backoff or when it changes", metadata: meta)
        } else {
            logger.debug("still cannot claim shard", metadata: meta)
        }
    }

    /// Quarantines a shard whose name is too long, on a worker thread.
    func startOverlong(_ shard: PendingShard, _ name: String) {
        let store = service.store, totals = service.totals, gate = service.gate
        let continuation = self.continuation
        let pool = workPool
        Task {
            let outcome: OverlongOutcome
            do {
                outcome = try await pool.runIfActive { store.quarantineOverlong(name, totals: totals, gate: gate) }
            } catch {
                outcome = .abandoned
            }
            continuation.yield(.overlongFinished(shard, name, outcome))
        }
    }

    func start(shard: PendingShard, item: WorkItem) {
        var shard = shard
        shard.origin = .claimed(item)
        let store = service.store
        let evaluator = service.evaluator
        let options = configuration.evaluation.metrics
        let totals = service.totals
        let gate = service.gate
        let continuation = self.continuation
        let pool = workPool
        let attempts = self.attempts[item.instance] ?? ShardAttempts()
        Task {
            let result: ShardResult
            do {
                result = try await pool.runIfActive {
                    store.process(item, evaluator: evaluator, options: options, totals: totals, gate: gate, attempts: attempts)
                }
            } catch {
                result = .abandoned(item)
            }
            continuation.yield(.finished(shard, result))
        }
    }

    /// Reports one finished shard.
    mutating func record(_ result: ShardResult) {
        let item = result.item
        let metrics = service.metrics
        var meta: Logger.Metadata = ["shard": "\(item.source)"]
        if item.instance != item.source { meta["instance"] = "\(item.instance)" }
        switch result {
        case .succeeded(_, let facts):
            attempts[item.instance] = nil
            service.health.setProblem(nil)
            metrics.shardsOK.increment()
            metrics.rows.increment(by: Int64(clamping: facts.rows))
            metrics.countedRows.increment(by: Int64(clamping: facts.countedRows))
            metrics.compressedBytes.increment(by: Int64(clamping: facts.compressedBytes))
            metrics.payloadBytes.increment(by: Int64(clamping: facts.payloadBytes))
            metrics.duration.recordNanoseconds(Int64(facts.seconds * 1e9))
            metrics.lastSuccess.record(WallClock.now())
            meta["rows"] = "\(facts.rows)"
            meta["seconds"] = "\(rounded(facts.seconds))"
            logger.info("shard processed", metadata: meta)
            textfileDirty = true
        case .failed(_, let facts):
            attempts[item.instance] = nil
            service.health.setProblem(nil)
            metrics.shardsFailed.increment()
            metrics.compressedBytes.increment(by: Int64(clamping: facts.compressedBytes))
            metrics.duration.recordNanoseconds(Int64(facts.seconds * 1e9))
            meta["reason"] = "\(facts.reason)"
            meta["kind"] = "\(facts.kind)"
            if let offset = facts.offset { meta["offset"] = "\(offset)" }
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
            var tries = self.attempts[item.instance] ?? ShardAttempts()
            tries.commitFailures += 1
            self.attempts[item.instance] = tries
            let attempts = tries.commitFailures
            service.health.setProblem("commit failed: \(error)")
            meta["error"] = "\(error)"
            meta["attempt"] = "\(attempts)"
            if configuration.exitWhenIdle, attempts >= 5 {
                logger.error("giving up on shard after repeated commit errors", metadata: meta)
                failure = CommitRetriesExhaustedError(shard: item.instance, lastError: "\(error)")
                beginStopping(reason: "commit errors")
                return
            }
            let delay = min(60.0, 2.0 * Double(1 << min(attempts - 1, 5)))
            meta["retry_in_seconds"] = "\(delay)"
            logger.error("cannot commit shard; it stays claimed and is retried", metadata: meta)
            if !stopping {
                scheduler.enqueue(.claimed(item), size: item.size, notBefore: WallClock.monotonic() + delay)
            }
        case .retryRead(_, let error):
            metrics.readErrors.increment()
            var tries = attempts[item.instance] ?? ShardAttempts()
            tries.readFailures += 1
            attempts[item.instance] = tries
            let delay = 2.0 * Double(1 << min(tries.readFailures - 1, 5))
            meta["error"] = "\(error)"
            meta["attempt"] = "\(tries.readFailures)"
            meta["retry_in_seconds"] = "\(delay)"
            logger.error("cannot read shard; it stays claimed and is retried", metadata: meta)
            if !stopping {
                scheduler.enqueue(.claimed(item), size: item.size, notBefore: WallClock.monotonic() + delay)
            }
        case .unsettled(_, let what):
            metrics.unsettled.increment()
            var tries = attempts[item.instance] ?? ShardAttempts()
            tries.changes += 1
            attempts[item.instance] = tries
            let delay = Double(1 << min(tries.changes - 1, 6))
            meta["change"] = "\(what)"
            meta["attempt"] = "\(tries.changes)"
            meta["retry_in_seconds"] = "\(delay)"
            logger.warning("shard is still being written (it changed while it was read); evaluating it again later", metadata: meta)
            if !stopping {
                scheduler.enqueue(.claimed(item), size: item.size, notBefore: WallClock.monotonic() + delay)
            }
        case .abandoned:
            logger.info("shard abandoned at shutdown; it will be processed again at the next start", metadata: meta)
        case .ignored:
            logger.notice("spool entry is not a regular file; left alone", metadata: meta)
        }
        metrics.updateTotals(service.totals.snapshot, options: configuration.evaluation.metrics)
    }

    /// With `--exit-when-idle`: once nothing is queued or running, rescan once more and stop if still idle.
    mutating func checkIdle() {
        guard configuration.exitWhenIdle, !stopping, scheduler.isIdle else { return }
        rescan(reason: "idle")
        dispatch()
        if scheduler.isIdle { beginStopping(reason: "spool drained (--exit-when-idle)") }
    }

    /// Updates the gauges and the status line (sent to systemd at most once a second, on ticks).
    mutating func publish() {
        service.metrics.pending.record(scheduler.pendingCount)
        service.metrics.inflight.record(scheduler.inflight)
        let ledger = service.totals.snapshot
        service.status.set("\(scheduler.pendingCount) pending, \(scheduler.inflight) in flight; \(ledger.shardsOK) ok, \(ledger.shardsFailed) failed in totals")
    }

    mutating func writeTextfile() {
        guard let path = configuration.textfilePath else { return }
        textfileDirty = false
        do {
            try service.metrics.writeTextfile(path: path)
        } catch {
            logger.error("cannot write the metrics textfile", metadata: ["path": "\(path)", "error": "\(error)"])
        }
    }

    /// After the loop: refuse further commits, wait for started ones, flush totals and the textfile.
    mutating func finish() {
        service.gate.close()
        let deadline = WallClock.monotonic() + 3
        while service.gate.active > 0, WallClock.monotonic() < deadline {
            usleepShort()
        }
        service.totals.flush()
        service.metrics.updateTotals(service.totals.snapshot, options: configuration.evaluation.metrics)
        service.metrics.inflight.record(0)
        writeTextfile()
        let ledger = service.totals.snapshot
        logger.info("totals flushed", metadata: ["shards_ok": "\(ledger.shardsOK)", "shards_failed": "\(ledger.shardsFailed)"])
    }
}

/// A spool entry that could not be claimed, and when to try it again.
struct UnclaimableEntry: Sendable, Equatable {
    /// The file as it was when the claim failed; any change makes it claimable again at once.
    var identity: FileIdentity
    /// Claims that failed.
    var failures: Int
    /// Monotonic time before which it is not tried again.
    var notBefore: Double
}

/// A thread-safe copy of the last status line, for `READY=1` and every `STATUS=` update after it.
final class StatusBoard: Sendable {
    /// `watching SPOOL: `, the start of every line.
    private let prefix: String
    private let text = Mutex("starting")
    init(spool: String) { prefix = "watching \(spool): " }
    /// Sets the counts part of the line.
    func set(_ value: String) { text.withLock { $0 = value } }
    /// The whole line: `watching SPOOL: COUNTS`.
    var current: String { prefix + text.withLock { $0 } }
}

func rounded(_ seconds: Double) -> Double { (seconds * 1000).rounded() / 1000 }

func usleepShort() {
    var request = timespec(tv_sec: 0, tv_nsec: 10_000_000)
    nanosleep(&request, nil)
}

extension Duration {
    /// The duration in seconds.
    var seconds: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) / 1e18
    }
}
