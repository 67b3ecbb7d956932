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

/// What the spool loop reacts to.
enum SpoolEvent: Sendable {
    case watch(WatchEvent)
    case tick
    case scanned(ScanReason, Result<[(name: String, info: EntryInfo)], any Error>)
    case partialsScanned([StalePartials.Entry])
    /// Names inotify reported, looked at on the maintenance thread (nil info: not a shard to take).
    case inspected([(name: String, info: Result<EntryInfo?, FileSystemError>)])
    case claimed(PendingShard, String, Result<ClaimResult, ClaimFailure>?)
    case finished(PendingShard, ClaimDisposition)
    /// The shard's record is written and waits for its group commit: its slot is free.
    case evaluated(PendingShard)
    /// A shard reported ``evaluated(_:)`` was committed (or its commit failed).
    case committed(ClaimDisposition)
    case overlongFinished(PendingShard, String, OverlongOutcome)
    case directoriesChecked(DirectoryCheck?)
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
    let totals: TotalsFile
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
        // Scans, claims (one at a time), re-opening a deleted output directory (it waits for commits in progress)
        // and the last flush: one thread of their own, off the loop.
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

        await loop.finish()
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

/// A commit kept failing in `--exit-when-idle` mode, so the batch cannot finish.
public struct CommitRetriesExhaustedError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The shard.
    public var shard: String
    /// The last error.
    public var lastError: String
    /// A readable message.
    public var description: String { "giving up on \(shard) after repeated commit errors: \(lastError)" }
}

/// The spool watch was lost (directory deleted, moved, replaced or unmounted): the service stops with this error so
/// that systemd restarts it on the directory the path names now.
public struct SpoolWatchLostError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Why.
    public var reason: String
    /// A readable message.
    public var description: String { "spool watch lost: \(reason)" }
}
