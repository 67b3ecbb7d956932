import Logging
import NIOPosix
import ServiceLifecycle
import SmoothdMetrics
import SmoothdPipeline

/// One run of `smoothd serve`: reconciles the spool and output directories, then runs the spool service, the metrics HTTP
/// server and the systemd watchdog in a `ServiceGroup` until SIGTERM/SIGINT (or, with `--exit-when-idle`,
/// until the spool is drained).
public struct DaemonRun: Sendable {
    /// The configuration.
    public let configuration: DaemonConfiguration
    /// The logger every part logs to.
    public let logger: Logger
    /// The metrics (exposed so in-process tests can read them).
    public let metrics: DaemonMetrics

    /// Creates a daemon; nothing happens until ``run()``.
    public init(configuration: DaemonConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
        metrics = DaemonMetrics(version: configuration.version, maximumGroups: configuration.metricsMaxGroups)
    }

    /// Runs until stopped. Returns normally after a graceful shutdown or a drained `--exit-when-idle` run;
    /// throws when the daemon cannot start or a part fails.
    public func run() async throws {
        try configuration.validate()
        // First, before anything can take long: SIGHUP, SIGUSR1, SIGUSR2 and SIGALRM would otherwise end the process.
        let signals = configuration.handleSignals ? SignalHandling(logger: logger) : nil
        defer { signals?.cancel() }
        let options = configuration.evaluation.metrics
        let notifier = SystemdNotifier(environment: configuration.environment)
        let health = DaemonHealth()
        let metrics = self.metrics

        // The metrics port is bound before anything is claimed, so that a busy port stops the start with nothing
        // touched (instead of after shards were claimed).
        let status = StatusBoard(spool: configuration.spoolDirectory)
        var parts: Set<String> = ["spool"]
        if configuration.metricsListen != nil { parts.insert("http") }
        let readiness = ReadinessGate(parts: parts, notifier: notifier, health: health) { status.current }
        let server: MetricsHTTPServer?
        let live = LiveReport(options: options, output: configuration.outputDirectory)
        if let address = configuration.metricsListen {
            var bound = MetricsHTTPServer(
                address: address,
                routes: HTTPRoutes(metrics: { metrics.render() }, unhealthyReason: { health.unhealthyReason },
                                   live: { live.current(now: WallClock.now()) }),
                onListening: { _ in readiness.markReady("http") },
                logger: logger)
            try await bound.bind()
            server = bound
        } else {
            server = nil
        }
        /// A start-up step: its file work blocks, so it runs on NIO's shared thread pool (the spool service's pools
        /// exist only once it runs). When it fails, the bound metrics socket is closed before the error is passed on.
        func step<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
            do {
                return try await NIOThreadPool.singleton.runIfActive(body)
            } catch {
                await server?.closeUnused()
                throw error
            }
        }

        let store = try await step {
            try SpoolStore(spoolPath: configuration.spoolDirectory, outputPath: configuration.outputDirectory,
                           deleteProcessed: configuration.deleteProcessed)
        }
        notifier.status("reconciling \(configuration.outputDirectory)")
        let report = try await step { try store.recover() }
        for name in report.removedTemporaryFiles {
            logger.notice("removed a temporary file left by an interrupted write", metadata: ["file": "\(name)"])
        }
        for name in report.completedCommits {
            logger.notice("completed the commit of a shard recorded before a crash", metadata: ["shard": "\(ShardName.source(ofInstance: name))", "instance": "\(name)"])
        }
        for name in report.strayEntries {
            logger.warning("work directory entry is not a regular file; left alone", metadata: ["entry": "\(name)"])
        }
        if let textfile = configuration.textfilePath {
            // A kill -9 during a textfile write leaves its temporary file; remove it.
            try await step {
                guard let directory = try? DirectoryHandle(path: parentDirectory(of: textfile), create: false) else { return }
                try? directory.unlink(DirectoryHandle.temporaryName(for: lastComponent(of: textfile)))
            }
        }
        let (ledger, unreadable, superseded) = try await step { try store.rebuildLedger(options: options, groupBy: configuration.runs.groupBy) }
        for name in unreadable {
            logger.warning("record cannot be read or placed in a group; not counted in totals", metadata: ["file": "\(name)"])
        }
        for (old, by) in superseded {
            // A supersession a crash interrupted after the new record was written: finish it.
            do {
                try store.moveSuperseded(old)
                logger.notice("finished a supersession interrupted before: the older record moved to superseded/", metadata: ["superseded": "\(old)", "by": "\(by)"])
            } catch {
                logger.error("cannot move a superseded record; it is not counted and is moved at the next start", metadata: ["superseded": "\(old)", "error": "\(error)"])
            }
        }
        let totals = TotalsFile(ledger: ledger, output: store.output, options: options, logger: logger)
        try await step { totals.flush() }
        live.attach(totals)
        metrics.updateTotals(ledger, options: options)
        logger.info("totals reconciled", metadata: [
            "shards_ok": "\(ledger.shardsOK)", "shards_failed": "\(ledger.shardsFailed)",
            "reclaimed": "\(report.reclaimed.count)",
        ])

        let readyLogger = logger
        let spool = SpoolService(
            configuration: configuration, store: store, totals: totals, gate: CommitGate(), metrics: metrics,
            health: health, notifier: notifier, readiness: readiness,
            evaluator: ShardEvaluator(options: configuration.perShardEvaluation),
            reclaimed: report.reclaimed, status: status, logger: logger)

        // Graceful shutdown runs in reverse order: the spool drains first while the metrics server and the
        // watchdog keep going.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let interval = notifier.watchdogInterval {
            services.append(.init(
                service: WatchdogService(notifier: notifier, interval: interval, health: health, logger: logger),
                successTerminationBehavior: .gracefullyShutdownGroup, serviceName: "watchdog"))
        }
        if let server {
            services.append(.init(service: server, successTerminationBehavior: .gracefullyShutdownGroup, serviceName: "metrics-http"))
        }
        services.append(.init(service: spool, successTerminationBehavior: .gracefullyShutdownGroup, serviceName: "spool"))

        var groupConfiguration = ServiceGroupConfiguration(
            services: services,
            gracefulShutdownSignals: configuration.handleSignals ? [.sigterm, .sigint] : [],
            logger: logger)
        groupConfiguration.maximumGracefulShutdownDuration = configuration.shutdownGrace + .seconds(4)
        logger.info("starting", metadata: [
            "spool": "\(configuration.spoolDirectory)", "output": "\(configuration.outputDirectory)",
            "max_inflight": "\(configuration.maxInflight)",
            "metrics": "\(configuration.metricsListen?.description ?? "off")",
        ])
        try await ServiceGroup(configuration: groupConfiguration).run()
        readyLogger.info("stopped")
    }
}
