import Logging
import SmoothdMetrics
import SmoothdPipeline
import SmoothdRuns

/// A configuration value out of range.
public struct DaemonConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What is wrong.
    public var message: String
    /// Creates an error.
    public init(_ message: String) { self.message = message }
    /// The message.
    public var description: String { message }
}

/// How `serve` places shards in runs (the rules are `SmoothdRuns`', shared with `eval`).
public struct RunRules: Sendable, Equatable {
    /// The meta keys results are grouped by (`--group-by`, default `model,checkpoint,split`).
    public var groupBy: GroupBy = .standard
    /// A shard with non-finite rows is invalid (`--fail-on-nonfinite`: kind `nonfinite_rows`, moved to `failed/`).
    public var failOnNonfinite = false

    /// The defaults.
    public init(groupBy: GroupBy = .standard, failOnNonfinite: Bool = false) {
        self.groupBy = groupBy
        self.failOnNonfinite = failOnNonfinite
    }
}

/// Everything `smoothd serve` needs; `ServeCommand` builds it from flags and the config file, tests build it
/// directly.
public struct DaemonConfiguration: Sendable {
    /// The spool directory producers rename shards into (created when missing).
    public var spoolDirectory: String
    /// Where summaries, error records and `totals.json` go (created when missing).
    public var outputDirectory: String
    /// Metric options, and the decode threads and memory budget shared by all shards in flight.
    public var evaluation: EvaluationOptions
    /// Grouping and the non-finite rule.
    public var runs = RunRules()
    /// The most groups with `smoothd_group_*` gauges, the most recently updated (`--metrics-max-groups`, default 100).
    public var metricsMaxGroups = 100
    /// Age in seconds from which an unfinished spool file is reported as stale (`--stale-partial-seconds`, default 3600).
    public var stalePartialSeconds: Double = 3600
    /// Shards processed at once (`--max-inflight`, default 2).
    public var maxInflight: Int = 2
    /// Where `/metrics` and `/healthz` are served; `nil` disables the server. Default `127.0.0.1:9464`.
    public var metricsListen: ListenAddress? = .loopbackDefault
    /// node_exporter textfile path (`--textfile`), written atomically after changes.
    public var textfilePath: String?
    /// Delete shards after their summary is committed instead of moving them to `SPOOL/done/`.
    public var deleteProcessed = false
    /// Drain the spool and exit 0 once idle (batch mode).
    public var exitWhenIdle = false
    /// Full rescan period, which covers filesystems where inotify misses writes (NFS). Default 30 s.
    public var rescanInterval: Duration = .seconds(30)
    /// How long SIGTERM waits for shards in flight before abandoning them (they are reprocessed at the next start).
    public var shutdownGrace: Duration = .seconds(5)
    /// Shards of at least this size count as large: they never take the last free slot (default 64 MiB).
    public var largeShardBytes: UInt64 = 64 << 20
    /// The most shard names kept queued; beyond it detections wait for a rescan.
    public var maxPending = 100_000
    /// Install SIGTERM/SIGINT handlers for graceful shutdown (off for in-process tests).
    public var handleSignals = true
    /// The environment read for `NOTIFY_SOCKET` and `WATCHDOG_USEC`.
    public var environment: [String: String] = [:]
    /// The version reported by `smoothd_build_info`.
    public var version = "dev"

    /// Creates a configuration with defaults for everything but the directories and evaluation options.
    public init(spoolDirectory: String, outputDirectory: String, evaluation: EvaluationOptions) {
        self.spoolDirectory = spoolDirectory
        self.outputDirectory = outputDirectory
        self.evaluation = evaluation
    }

    /// The options each shard is evaluated with: the thread count and memory budget divided among the slots.
    public var perShardEvaluation: EvaluationOptions {
        EvaluationOptions(
            metrics: evaluation.metrics,
            threads: max(1, evaluation.threads / max(1, maxInflight)),
            memoryBudget: max(1, evaluation.memoryBudget / max(1, maxInflight)))
    }

    /// Checks ranges; throws the first problem.
    public func validate() throws(DaemonConfigurationError) {
        guard !spoolDirectory.isEmpty else { throw DaemonConfigurationError("--spool is required") }
        guard !outputDirectory.isEmpty else { throw DaemonConfigurationError("--output is required") }
        guard (1...256).contains(maxInflight) else { throw DaemonConfigurationError("--max-inflight must be between 1 and 256") }
        guard rescanInterval >= .milliseconds(100) else { throw DaemonConfigurationError("--rescan-interval must be at least 0.1 s") }
        guard shutdownGrace >= .zero, shutdownGrace <= .seconds(8) else {
            throw DaemonConfigurationError("--shutdown-grace must be between 0 and 8 s (systemd expects an exit within 10 s)")
        }
        guard stalePartialSeconds.isFinite, stalePartialSeconds >= 0 else { throw DaemonConfigurationError("--stale-partial-seconds must be a number of seconds >= 0") }
        guard (0...100_000).contains(metricsMaxGroups) else { throw DaemonConfigurationError("--metrics-max-groups must be between 0 and 100000") }
        guard maxPending >= 1 else { throw DaemonConfigurationError("max-pending must be positive") }
        let problems = evaluation.metrics.problems
        if let first = problems.first { throw DaemonConfigurationError(first) }
    }
}
