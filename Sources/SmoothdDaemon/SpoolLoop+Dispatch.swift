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
    /// Names reported by inotify: each is looked at (`fstatat`) on the maintenance thread, not on the loop's task,
    /// and comes back as ``SpoolEvent/inspected(_:)``.
    mutating func detect(_ names: [String]) {
        guard !stopping, !names.isEmpty else { return }
        inspectionsInFlight += 1
        let store = service.store
        let continuation = self.continuation
        let pool = maintenancePool
        Task {
            let found = try? await pool.runIfActive {
                names.map { name in (name, Result { () throws(FileSystemError) in try store.candidate(name) }) }
            }
            continuation.yield(.inspected(found ?? []))  // nil: shutting down, the names stay in the spool
        }
    }

    /// Queues the inspected names that are shards to take now.
    mutating func inspected(_ found: [(name: String, info: Result<EntryInfo?, FileSystemError>)]) {
        inspectionsInFlight -= 1
        guard !stopping else { return }
        for (name, result) in found {
            switch result {
            case .success(let info):
                guard let info, !skipUnclaimable(name, info) else { continue }
                if scheduler.enqueue(.spool(name), size: info.size) == .added {
                    logger.debug("shard detected", metadata: ["shard": "\(ShardName.display(name))", "bytes": "\(info.size)"])
                }
            case .failure(let error):
                logger.warning("cannot inspect spool entry", metadata: ["shard": "\(ShardName.display(name))", "error": "\(error)"])
            }
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
        return ContinuousClock.now < entry.notBefore
    }

    /// Lists the spool on the maintenance thread (`readdir` and a `stat` per entry block); the entries come back as
    /// ``SpoolEvent/scanned(_:_:)``.
    mutating func rescan(reason: ScanReason) {
        nextRescan = .now + configuration.rescanInterval
        service.metrics.rescans.increment()
        scansInFlight += 1
        let store = service.store
        let continuation = self.continuation
        let pool = maintenancePool
        Task {
            // Unfinished files first, for the stale-partial report: the loop sees them before the scan it waits for.
            if let partials = try? await pool.runIfActive({ try store.scanPartials() }) {
                continuation.yield(.partialsScanned(partials))
            }
            let entries: Result<[(name: String, info: EntryInfo)], any Error>
            do {
                entries = try await pool.runIfActive {
                    Result { () throws(FileSystemError) in try store.scanSpoolEntries() }.mapError { $0 as any Error }
                }
            } catch {
                entries = .failure(error)
            }
            continuation.yield(.scanned(reason, entries))
        }
    }

    /// Reports unfinished files that became stale, once each, and sets their gauge; never touches them.
    mutating func partialsScanned(_ entries: [StalePartials.Entry]) {
        let before = stalePartials
        let (newly, stale) = stalePartials.observe(entries, now: WallClock.now())
        for report in newly {
            logger.warning("unfinished file in the spool has not changed for a long time (a producer that died before its rename?); left alone",
                           metadata: ["file": "\(ShardName.display(report.entry.name))", "age_seconds": "\(Int(report.age))",
                                      "bytes": "\(report.entry.size)", "limit_seconds": "\(Int(before.threshold))"])
        }
        service.metrics.stalePartialFiles.record(stale)
        textfileDirty = textfileDirty || !newly.isEmpty || stale != before.count
    }

    /// Queues what a scan found.
    mutating func scanned(_ reason: ScanReason, _ entries: Result<[(name: String, info: EntryInfo)], any Error>) {
        scansInFlight -= 1
        guard !stopping else { return }
        switch entries {
        case .success(let entries):
            var added = 0
            var present: Set<String> = []
            for (name, info) in entries {
                present.insert(name)
                if skipUnclaimable(name, info) { continue }
                if scheduler.enqueue(.spool(name), size: info.size) == .added { added += 1 }
            }
            unclaimable = unclaimable.filter { present.contains($0.key) }
            logger.debug("rescanned the spool", metadata: ["reason": "\(reason.rawValue)", "new": "\(added)"])
            idleScanFoundNothing = reason == .idle && added == 0 && scheduler.isIdle
        case .failure(let error):
            logger.error("cannot scan the spool", metadata: ["error": "\(error)"])
        }
    }

    /// Starts shards while slots are free: a claimed one is processed, a spool entry claimed (a `rename`, on the
    /// maintenance thread) and then processed, off the loop.
    mutating func dispatch() {
        // Shards waiting for their group commit hold no slot, but are bounded: a disk slower than the evaluations
        // holds back new claims rather than piling up records.
        while committing < 2 * GroupCommitter.maximumBatch, let shard = scheduler.next(now: .now) {
            switch shard.origin {
            case .claimed(let item):
                start(shard: shard, item: item)
            case .spool(let name) where ShardName.isOverlong(name):
                startOverlong(shard, name)
            case .spool(let name):
                start(shard: shard, claiming: name)
            }
        }
    }

    /// Reports a claim made on a worker thread. The shard's slot stays taken while a claimed shard is processed.
    mutating func claimed(_ shard: PendingShard, _ name: String, _ result: Result<ClaimResult, ClaimFailure>?) {
        switch result {
        case .success(.claimed(let claimed)):
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
        case .success(.vanished), .success(.ignored), nil:
            scheduler.finished(shard)
        case .failure(let failure):
            noteUnclaimable(name, failure)
            scheduler.finished(shard)
        }
    }

    /// Remembers a spool entry that could not be claimed; logs it once (at error level), later failures at debug.
    mutating func noteUnclaimable(_ name: String, _ failure: ClaimFailure) {
        service.metrics.claimErrors.increment()
        let error = failure.error
        let identity = failure.identity ?? FileIdentity(inode: 0, size: 0, modificationNanoseconds: 0, changeNanoseconds: 0)
        var entry = unclaimable[name] ?? UnclaimableEntry(identity: identity, failures: 0, notBefore: .now)
        entry.identity = identity
        entry.failures += 1
        let delay = Backoff.claim.delay(afterFailures: entry.failures)
        entry.notBefore = .now + delay
        unclaimable[name] = entry
        let meta: Logger.Metadata = ["shard": "\(ShardName.display(name))", "error": "\(error)", "retry_in_seconds": "\(configuration.exitWhenIdle ? 0 : delay.seconds)"]
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

    /// Processes the claimed `item` on a worker thread.
    func start(shard: PendingShard, item: WorkItem) {
        let attempts = self.attempts[item.instance] ?? ShardAttempts()
        let work = shardWork()
        let continuation = self.continuation
        Task { await work.run(shard.claimed(item), attempts, reporting: continuation) }
    }

    /// Claims the spool entry `name` on the maintenance thread (claims run one at a time, as ``SpoolStore/claim(_:)``
    /// requires, and after any scan queued before them), then processes it on a worker thread; the claim is reported
    /// first (``SpoolEvent/claimed(_:_:_:)``), then the result.
    func start(shard: PendingShard, claiming name: String) {
        let work = shardWork()
        let continuation = self.continuation
        let claimPool = maintenancePool
        Task {
            let claim: Result<ClaimResult, ClaimFailure>?
            do {
                claim = try await claimPool.runIfActive {
                    Result { () throws(FileSystemError) in try work.store.claim(name) }.mapError { error in
                        // The entry as it is now, so that a change to it (owner, mode, content) ends the backoff.
                        ClaimFailure(error: error, identity: (try? work.store.spool.entry(name))?.identity)
                    }
                }
            } catch {
                claim = nil  // shutting down: the entry stays in the spool
            }
            continuation.yield(.claimed(shard, name, claim))
            guard case .success(.claimed(let item)) = claim else { return }
            // A fresh claim has a new instance name, so no earlier attempts.
            await work.run(shard.claimed(item), ShardAttempts(), reporting: continuation)
        }
    }

    /// What a worker needs to process a shard.
    func shardWork() -> ShardWork {
        ShardWork(service: service, pool: workPool)
    }
}

/// A claim that failed: why, and the entry's identity right after (nil when it could not be taken).
struct ClaimFailure: Error, Sendable {
    /// Why the `rename` (or what led to it) failed.
    var error: FileSystemError
    /// The entry then.
    var identity: FileIdentity?
}

/// A spool entry that could not be claimed, and when to try it again.
struct UnclaimableEntry: Sendable, Equatable {
    /// The file as it was when the claim failed; any change makes it claimable again at once.
    var identity: FileIdentity
    /// Claims that failed.
    var failures: Int
    /// When it may be tried again at the earliest.
    var notBefore: ContinuousClock.Instant
}

/// The service's parts a worker thread uses to process a claimed shard, and the pool it runs on.
struct ShardWork: Sendable {
    let service: SpoolService
    let pool: NIOThreadPool

    /// The spool store.
    var store: SpoolStore { service.store }

    /// Evaluates the claimed shard on the pool and commits it, reporting to the loop: `.finished` when it ends
    /// without a commit (or the pool has stopped: `abandoned`); else `.evaluated` once its record is written (its
    /// slot is free for the next shard while it waits for its group commit) and `.committed` when that has ended.
    func run(_ shard: PendingShard, _ attempts: ShardAttempts, reporting continuation: AsyncStream<SpoolEvent>.Continuation) async {
        guard case .claimed(let item) = shard.origin else { return }
        let service = self.service
        let step: ProcessStep
        do {
            step = try await pool.runIfActive {
                service.store.prepare(item, evaluator: service.evaluator, options: service.configuration.evaluation.metrics,
                                      totals: service.totals, gate: service.gate, attempts: attempts,
                                      failOnNonfinite: service.configuration.runs.failOnNonfinite)
            }
        } catch {
            step = .finished(.abandoned(item))
        }
        switch step {
        case .finished(let disposition):
            continuation.yield(.finished(shard, disposition))
        case .commit(let commit):
            continuation.yield(.evaluated(shard))
            // Reported straight from the committer's thread: resuming this task first only to yield cost a hop per shard.
            service.store.committer.submit(commit, in: service.store) { continuation.yield(.committed($0)) }
        }
    }
}

extension PendingShard {
    /// The same shard, now claimed as `item`.
    func claimed(_ item: WorkItem) -> PendingShard {
        var shard = self
        shard.origin = .claimed(item)
        return shard
    }
}

/// Why the spool is scanned (for the debug log, and the idle check of `--exit-when-idle`).
enum ScanReason: String, Sendable {
    case start, overflow, periodic, queueFull = "queue had been full", idle
}
