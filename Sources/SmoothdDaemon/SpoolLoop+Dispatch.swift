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
        let delay = Backoff.claim.delay(afterFailures: entry.failures).seconds
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
