import CoreMetrics
import Metrics
import Prometheus
import SmoothdMetrics
import Synchronization

/// The daemon's metrics, recorded through the swift-metrics API into its own swift-prometheus registry (the
/// global `MetricsSystem` is left alone, so several daemons can run in one test process).
///
/// `Sendable`: swift-metrics handles and the Prometheus registry are thread-safe; all properties are immutable.
public final class DaemonMetrics: Sendable {
    /// The registry that `/metrics` and `--textfile` render.
    public let registry: PrometheusCollectorRegistry
    let shardsOK: CoreMetrics.Counter
    let shardsFailed: CoreMetrics.Counter
    let rows: CoreMetrics.Counter
    let countedRows: CoreMetrics.Counter
    let compressedBytes: CoreMetrics.Counter
    let payloadBytes: CoreMetrics.Counter
    let duration: CoreMetrics.Timer
    let pending: CoreMetrics.Gauge
    let inflight: CoreMetrics.Gauge
    let lastSuccess: CoreMetrics.Gauge
    let inotifyOverflows: CoreMetrics.Counter
    let rescans: CoreMetrics.Counter
    let nameReuses: CoreMetrics.Counter
    let commitErrors: CoreMetrics.Counter
    let readErrors: CoreMetrics.Counter
    let unsettled: CoreMetrics.Counter
    let claimErrors: CoreMetrics.Counter
    let overlongNames: CoreMetrics.Counter
    let supersededRecords: CoreMetrics.Counter
    let nonfiniteRows: CoreMetrics.Counter
    let stalePartialFiles: CoreMetrics.Gauge
    /// The `smoothd_totals_*` gauges, one for each of ``totalsGauges``, in its order.
    let totals: [CoreMetrics.Gauge]

    /// Every metric family the daemon exports, with its help text.
    public static let families: [(name: String, help: String)] = [
        ("smoothd_shards_processed_total", "Shards processed since start, by result (ok or failed)."),
        ("smoothd_rows_total", "Rows read from shards processed since start."),
        ("smoothd_counted_rows_total", "Rows counted in the metrics (label not ignored, logits finite) since start."),
        ("smoothd_compressed_bytes_total", "Compressed (zstd) bytes of shards processed since start."),
        ("smoothd_decompressed_bytes_total", "Decompressed LSHD payload bytes of shards processed since start."),
        ("smoothd_shard_duration_seconds", "Time to evaluate and commit one shard."),
        ("smoothd_pending_shards", "Shards detected and waiting for a processing slot."),
        ("smoothd_inflight_shards", "Shards being processed now."),
        ("smoothd_last_success_timestamp_seconds", "Unix time of the last shard committed with a summary."),
        ("smoothd_inotify_overflows_total", "inotify queue overflows (each one triggers a rescan)."),
        ("smoothd_rescans_total", "Full spool rescans (start, periodic, overflow)."),
        ("smoothd_shard_name_reuses_total", "Shards whose name was already used by a recorded shard; recorded under NAME~N."),
        ("smoothd_commit_errors_total", "I/O errors while committing a shard (the shard is retried)."),
        ("smoothd_read_errors_total", "I/O errors while opening or reading a claimed shard (retried, then rejected as unreadable)."),
        ("smoothd_unsettled_shards_total", "Evaluations discarded because the file changed while it was read (a producer still writing)."),
        ("smoothd_claim_errors_total", "Spool entries that could not be claimed (left in place, retried after a backoff)."),
        ("smoothd_overlong_names_total", "Shards whose name is too long for the file names derived from it; quarantined in failed/ under a shortened name."),
        ("smoothd_superseded_records_total", "Summaries superseded by a re-run of the same shard (moved to OUTPUT/superseded/) since start."),
        ("smoothd_nonfinite_rows_total", "Rows with a NaN or infinite logit in shards processed since start (left out of every metric; --fail-on-nonfinite rejects such shards)."),
        ("smoothd_stale_partial_files", "Unfinished spool files (.*, *.tmp, *.part) unchanged for --stale-partial-seconds; never touched."),
        ("smoothd_totals_shards", "Shards in totals.json, by result."),
        ("smoothd_totals_rows", "Rows in totals.json."),
        ("smoothd_totals_loss", "Label-smoothed loss over all summaries in totals.json."),
        ("smoothd_totals_nll", "Mean negative log-likelihood over all summaries in totals.json."),
        ("smoothd_totals_accuracy", "Top-1 accuracy over all summaries in totals.json."),
        ("smoothd_totals_ece", "Expected calibration error over all summaries in totals.json."),
        ("smoothd_build_info", "Build information; the value is always 1."),
    ] + GroupGauges.help

    /// The gauges of totals.json: family, labels, and the value read from the ledger and its headline values (NaN
    /// where a metric is undefined). Set together by ``updateTotals(_:options:)``.
    static let totalsGauges: [(name: String, labels: [(String, String)], value: @Sendable (TotalsLedger, MetricValues) -> Double)] = [
        ("smoothd_totals_shards", [("result", "ok")], { ledger, _ in Double(ledger.shardsOK) }),
        ("smoothd_totals_shards", [("result", "failed")], { ledger, _ in Double(ledger.shardsFailed) }),
        ("smoothd_totals_rows", [], { ledger, _ in Double(Int64(clamping: ledger.accumulator.rows)) }),
        ("smoothd_totals_loss", [], { _, values in values.loss ?? .nan }),
        ("smoothd_totals_nll", [], { _, values in values.nll ?? .nan }),
        ("smoothd_totals_accuracy", [], { _, values in values.accuracy ?? .nan }),
        ("smoothd_totals_ece", [], { _, values in values.ece ?? .nan }),
    ]

    /// The most groups the `smoothd_group_*` gauges show (`--metrics-max-groups`).
    let maximumGroups: Int
    /// The rendered group gauges (see ``GroupGauges``), replaced by ``updateTotals(_:options:)``.
    private let groupText = Mutex<[UInt8]>([])

    /// Creates the registry and every metric; `version` goes into `smoothd_build_info`; at most `maximumGroups`
    /// groups get `smoothd_group_*` gauges.
    public init(version: String, maximumGroups: Int = 100) {
        let registry = PrometheusCollectorRegistry()
        self.registry = registry
        self.maximumGroups = maximumGroups
        let help = Dictionary(DaemonMetrics.families.map { ($0.name, $0.help) }, uniquingKeysWith: { a, _ in a })
        let factory = DescribedPrometheusFactory(
            registry: registry, help: help,
            durationBuckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800].map { Duration.milliseconds(Int64($0 * 1000)) })
        func counter(_ name: String, _ dimensions: [(String, String)] = []) -> CoreMetrics.Counter {
            CoreMetrics.Counter(label: name, dimensions: dimensions, factory: factory)
        }
        func gauge(_ name: String, _ dimensions: [(String, String)] = []) -> CoreMetrics.Gauge {
            CoreMetrics.Gauge(label: name, dimensions: dimensions, factory: factory)
        }
        shardsOK = counter("smoothd_shards_processed_total", [("result", "ok")])
        shardsFailed = counter("smoothd_shards_processed_total", [("result", "failed")])
        rows = counter("smoothd_rows_total")
        countedRows = counter("smoothd_counted_rows_total")
        compressedBytes = counter("smoothd_compressed_bytes_total")
        payloadBytes = counter("smoothd_decompressed_bytes_total")
        duration = CoreMetrics.Timer(label: "smoothd_shard_duration_seconds", dimensions: [], factory: factory)
        pending = gauge("smoothd_pending_shards")
        inflight = gauge("smoothd_inflight_shards")
        lastSuccess = gauge("smoothd_last_success_timestamp_seconds")
        inotifyOverflows = counter("smoothd_inotify_overflows_total")
        rescans = counter("smoothd_rescans_total")
        nameReuses = counter("smoothd_shard_name_reuses_total")
        commitErrors = counter("smoothd_commit_errors_total")
        readErrors = counter("smoothd_read_errors_total")
        unsettled = counter("smoothd_unsettled_shards_total")
        claimErrors = counter("smoothd_claim_errors_total")
        overlongNames = counter("smoothd_overlong_names_total")
        supersededRecords = counter("smoothd_superseded_records_total")
        nonfiniteRows = counter("smoothd_nonfinite_rows_total")
        stalePartialFiles = gauge("smoothd_stale_partial_files")
        totals = DaemonMetrics.totalsGauges.map { gauge($0.name, $0.labels) }
        gauge("smoothd_build_info", [("version", version), ("swift", DaemonMetrics.swiftVersion)]).record(1)
        // Counters start at zero so that every family is present in the first scrape.
        for c in [shardsOK, shardsFailed, rows, countedRows, compressedBytes, payloadBytes, inotifyOverflows, rescans, nameReuses, commitErrors, readErrors, unsettled, claimErrors, overlongNames, supersededRecords, nonfiniteRows] {
            c.increment(by: 0)
        }
        for g in [pending, inflight, stalePartialFiles] { g.record(0) }
    }

    /// The Prometheus text exposition of every metric: the registry's, then the group gauges.
    public func render() -> [UInt8] {
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return buffer + groupText.withLock { $0 }
    }

    /// Sets the totals gauges from the ledger.
    func updateTotals(_ ledger: TotalsLedger, options: MetricOptions) {
        let values = ledger.headline(options: options)
        for (gauge, family) in zip(totals, DaemonMetrics.totalsGauges) { gauge.record(family.value(ledger, values)) }
        let groups = GroupGauges.render(ledger, options: options, limit: maximumGroups)
        groupText.withLock { $0 = groups }
    }

    /// The compiler's language mode, for `smoothd_build_info`.
    static var swiftVersion: String {
        #if swift(>=6.3)
        return "6.3"
        #elseif swift(>=6.2)
        return "6.2"
        #else
        return "6"
        #endif
    }
}

/// A swift-metrics factory over a swift-prometheus registry that, unlike `PrometheusMetricsFactory`, attaches
/// `# HELP` text to each family and uses one bucket layout for timers.
struct DescribedPrometheusFactory: MetricsFactory {
    let registry: PrometheusCollectorRegistry
    let help: [String: String]
    let durationBuckets: [Duration]

    private func descriptor(_ label: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: label, unitName: "", helpText: help[label] ?? "")
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
    }

    func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
    }

    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        registry.makeGauge(descriptor: descriptor(label), labels: dimensions)
    }

    func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        registry.makeGauge(descriptor: descriptor(label), labels: dimensions)
    }

    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        registry.makeDurationHistogram(descriptor: descriptor(label), labels: dimensions, buckets: durationBuckets)
    }

    func destroyCounter(_ handler: any CounterHandler) {}
    func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {}
    func destroyRecorder(_ handler: any RecorderHandler) {}
    func destroyMeter(_ handler: any MeterHandler) {}
    func destroyTimer(_ handler: any TimerHandler) {}
}
