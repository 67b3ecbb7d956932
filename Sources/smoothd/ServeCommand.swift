import ArgumentParser
import Logging
import SmoothdDaemon
import SmoothdPipeline
import SmoothdRuns

/// `smoothd serve`: the spool daemon. Parses flags, merges the `--config` file under them, and hands a
/// `DaemonConfiguration` to `DaemonRun`, where all the logic lives.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Watch a spool directory and evaluate every shard renamed into it, exactly once.",
        discussion: """
        Producers write NAME.lshd.zst under a temporary name (starting with '.' or ending in .tmp/.part) in the \
        spool directory, then rename it to its final name. smoothd claims it, writes OUTPUT/NAME.summary.json \
        (or OUTPUT/NAME.error.json and moves the shard to SPOOL/failed/), keeps OUTPUT/totals.json equal to the \
        merge of the current summaries (in total and per group, --group-by, as eval --json), and moves the shard to SPOOL/done/. Prometheus metrics are served at /metrics, \
        health at /healthz, the live HTML report at / and the totals at /totals.json. Under systemd (Type=notify) it sends READY, WATCHDOG, STATUS and STOPPING. \
        SIGTERM or SIGINT stops it within 10 seconds with exit code 0.

        --config FILE holds 'key = value' lines named like the long options (spool = /var/spool/smoothd, \
        metrics-listen = 127.0.0.1:9464, delete-processed = true, …). Flags win over the file.
        """)

    @Option(help: ArgumentHelp("Spool directory that producers rename finished shards into.", valueName: "dir"))
    var spool: String?

    @Option(help: ArgumentHelp("Directory for NAME.summary.json, NAME.error.json and totals.json.", valueName: "dir"))
    var output: String?

    @Option(help: ArgumentHelp("Config file of 'key = value' lines; command-line flags win over it.", valueName: "file"))
    var config: String?

    @Option(help: ArgumentHelp("Address for /metrics, /healthz, / (the live report) and /totals.json, or 'none'.", valueName: "host:port"))
    var metricsListen = ServeCommand.defaults.metricsListen?.description ?? "none"

    @Option(help: ArgumentHelp("Also write the metrics atomically to this file, for node_exporter's textfile collector.", valueName: "path"))
    var textfile: String?

    @Option(help: ArgumentHelp("Shards processed at once; --threads and --memory-budget are shared among them.", valueName: "n"))
    var maxInflight = ServeCommand.defaults.maxInflight

    @Flag(inversion: .prefixedNo, help: "Delete shards once their summary is committed, instead of moving them to SPOOL/done/.")
    var deleteProcessed: Bool?

    @Flag(inversion: .prefixedNo, help: "Process everything in the spool, then exit 0 (batch mode).")
    var exitWhenIdle: Bool?

    @Option(help: ArgumentHelp("Seconds between full rescans of the spool, which find shards inotify did not report (on NFS and other network filesystems, changes made on other hosts raise no event).", valueName: "seconds"))
    var rescanInterval = Seconds(ServeCommand.defaults.rescanInterval)

    @Option(help: ArgumentHelp("Seconds SIGTERM waits for shards in flight before abandoning them (0-8).", valueName: "seconds"))
    var shutdownGrace = Seconds(ServeCommand.defaults.shutdownGrace)

    @Option(help: ArgumentHelp("Shards of at least this many bytes never take the last free slot, so small shards keep flowing.", valueName: "bytes"))
    var largeShardBytes = ServeCommand.defaults.largeShardBytes

    @Option(help: ArgumentHelp("The most groups with smoothd_group_* gauges (the most recently updated); the others are counted in smoothd_groups_omitted.", valueName: "n"))
    var metricsMaxGroups = ServeCommand.defaults.metricsMaxGroups

    @Option(help: ArgumentHelp("Seconds after which an unfinished spool file (.*, *.tmp, *.part) that has not changed is logged once and counted in smoothd_stale_partial_files (never touched).", valueName: "seconds"))
    var stalePartialSeconds = ServeCommand.defaults.stalePartialSeconds

    @Option(help: ArgumentHelp("trace, debug, info, notice, warning, error or critical.", valueName: "level"))
    var logLevel = "info"

    @OptionGroup var metricOptions: MetricOptionGroup

    @OptionGroup var runOptions: RunOptionGroup

    /// The configuration's defaults, which the help shows (so they are written once, in `DaemonConfiguration`).
    static let defaults = DaemonConfiguration(spoolDirectory: "", outputDirectory: "", evaluation: EvaluationOptions())

    /// Keys of the config file that are flags (`true`/`false`).
    static let flagKeys: Set<String> = ["delete-processed", "exit-when-idle", "fail-on-nonfinite"]

    mutating func run() async throws {
        var command = self
        if let path = config {
            let userArguments = ServeCommand.commandLineArguments()
            do {
                let fromFile = try DaemonConfigFile.load(path: path).arguments(flagKeys: ServeCommand.flagKeys, overriddenBy: userArguments)
                command = try ServeCommand.parse(fromFile + userArguments)
            } catch let error as ConfigFileError {
                throw ValidationError("config file \(error)")
            } catch {
                throw ValidationError("config file \(path): \(ServeCommand.message(for: error))")
            }
        }
        let environment = processEnvironment()
        let level = try command.parsedLogLevel()
        let journald = JournalLogHandler.isJournalStream(environment: environment)
        let logger = Logger(label: "smoothd") { _ in JournalLogHandler(journald: journald, logLevel: level) }
        var configuration = try command.daemonConfiguration()
        configuration.environment = environment
        do {
            try await DaemonRun(configuration: configuration, logger: logger).run()
        } catch {
            logger.critical("smoothd serve failed", metadata: ["error": "\(error)"])
            throw ExitCode.failure
        }
    }

    /// The arguments after `serve` on this process's command line.
    static func commandLineArguments() -> [String] {
        let all = Array(CommandLine.arguments.dropFirst())
        guard let index = all.firstIndex(of: "serve") else { return all }
        return Array(all[(index + 1)...])
    }

    func parsedLogLevel() throws -> Logger.Level {
        guard let level = Logger.Level(rawValue: logLevel.lowercased()) else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
        return level
    }

    /// The daemon configuration these options describe (what is not given keeps its `DaemonConfiguration` default).
    func daemonConfiguration() throws -> DaemonConfiguration {
        guard let spool, !spool.isEmpty else { throw ValidationError("--spool is required (on the command line or in the config file)") }
        guard let output, !output.isEmpty else { throw ValidationError("--output is required (on the command line or in the config file)") }
        var configuration = DaemonConfiguration(spoolDirectory: spool, outputDirectory: output, evaluation: try metricOptions.evaluationOptions())
        do {
            configuration.metricsListen = try ListenAddress.parse(metricsListen)
        } catch {
            throw ValidationError("--metrics-listen: \(error)")
        }
        configuration.textfilePath = textfile
        configuration.runs = RunRules(groupBy: try runOptions.parsedGroupBy(), failOnNonfinite: runOptions.failOnNonfinite)
        configuration.maxInflight = maxInflight
        if let deleteProcessed { configuration.deleteProcessed = deleteProcessed }
        if let exitWhenIdle { configuration.exitWhenIdle = exitWhenIdle }
        configuration.rescanInterval = try rescanInterval.duration("--rescan-interval")
        configuration.shutdownGrace = try shutdownGrace.duration("--shutdown-grace")
        configuration.largeShardBytes = largeShardBytes
        configuration.metricsMaxGroups = metricsMaxGroups
        configuration.stalePartialSeconds = stalePartialSeconds
        let version = SmoothdCommand.configuration.version
        configuration.version = version.isEmpty ? "dev" : version
        do {
            try configuration.validate()
        } catch {
            throw ValidationError(error.description)
        }
        return configuration
    }
}

/// A duration option given in seconds (any number; ``duration(_:)`` checks it), whose default the help shows in
/// whole seconds (`30`, not `30.0`).
struct Seconds: ExpressibleByArgument {
    var seconds: Double

    /// A default (``duration(_:)`` gives it back to the millisecond).
    init(_ duration: Duration) { seconds = Double(duration.components.seconds) + Double(duration.components.attoseconds) * 1e-18 }

    init?(argument: String) {
        guard let seconds = Double(argument) else { return nil }
        self.seconds = seconds
    }

    var defaultValueDescription: String {
        seconds == seconds.rounded() && abs(seconds) < 1e15 ? "\(Int64(seconds))" : "\(seconds)"
    }

    /// The duration, to the millisecond; a usage error naming `option` unless it is in [0, one year).
    func duration(_ option: String) throws -> Duration {
        guard seconds.isFinite, seconds >= 0, seconds < 86_400 * 365 else { throw ValidationError("\(option) must be a number of seconds") }
        return .milliseconds(Int64((seconds * 1000).rounded()))
    }
}
