import Foundation
import Logging
import SmoothdJSON
import SmoothdMetrics
import SmoothdPipeline
import Synchronization
import Testing

@testable import SmoothdDaemon

/// The whole service group run inside the test process (no signals), in batch mode.
@Suite("DaemonRun in process")
struct DaemonInProcessTests {
    @Test func drainsTheSpoolWritesTheTextfileAndExits() async throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let spool = dir.sub("spool"), out = dir.sub("out")
        try FileManager.default.createDirectory(atPath: spool, withIntermediateDirectories: true)
        for i in 0..<6 {
            try Files.drop(try ShardFactory.valid(rows: 25 + i, seed: UInt64(i)), named: "s\(i).lshd.zst", in: spool)
        }
        try Files.drop(try ShardFactory.badLabel(), named: "bad.lshd.zst", in: spool)
        let lines = Mutex<[String]>([])
        let logger = Logger(label: "smoothd") { _ in
            JournalLogHandler(journald: true, logLevel: .info) { line in lines.withLock { $0.append(line) } }
        }
        var configuration = DaemonConfiguration(
            spoolDirectory: spool, outputDirectory: out, evaluation: EvaluationOptions(metrics: MetricOptions(), threads: 2))
        configuration.metricsListen = nil
        configuration.exitWhenIdle = true
        configuration.handleSignals = false
        configuration.textfilePath = dir.sub("smoothd.prom")
        configuration.maxInflight = 3
        let daemon = DaemonRun(configuration: configuration, logger: logger)
        try await daemon.run()

        try expectTotalsMatchRecords(output: out, options: MetricOptions())
        let totals = try Files.json(out + "/totals.json")
        #expect(totals["shards_ok"] == .int(6))
        #expect(totals["shards_failed"] == .int(1))
        #expect(totals["first_processed_at"]?.stringValue != nil)
        let textfile = Files.text(dir.sub("smoothd.prom"))
        #expect(metricValue(textfile, #"smoothd_shards_processed_total{result="ok"}"#) == 6)
        #expect(metricValue(textfile, #"smoothd_shards_processed_total{result="failed"}"#) == 1)
        #expect(!Files.list(dir.path).contains { $0.hasSuffix(".tmp") })
        let rendered = String(decoding: daemon.metrics.render(), as: UTF8.self)
        for family in DaemonMetrics.families.map(\.name) {
            #expect(rendered.contains("# TYPE \(family) "), "\(family) missing from /metrics")
        }
        let log = lines.withLock { $0 }
        #expect(log.contains { $0.hasPrefix("<4>invalid shard quarantined") && $0.contains("shard=bad.lshd.zst") })
        #expect(log.filter { $0.hasPrefix("<6>shard processed") }.count == 6)
    }

    @Test func refusesBadConfiguration() async throws {
        var configuration = DaemonConfiguration(spoolDirectory: "/tmp/x", outputDirectory: "/tmp/y", evaluation: EvaluationOptions())
        configuration.maxInflight = 0
        #expect(throws: DaemonConfigurationError.self) { try configuration.validate() }
        configuration.maxInflight = 2
        configuration.shutdownGrace = .seconds(30)
        #expect(throws: DaemonConfigurationError.self) { try configuration.validate() }
        configuration.shutdownGrace = .seconds(5)
        try configuration.validate()
        configuration.evaluation.threads = 8
        configuration.evaluation.memoryBudget = 64 << 20
        configuration.maxInflight = 4
        #expect(configuration.perShardEvaluation.threads == 2)
        #expect(configuration.perShardEvaluation.memoryBudget == 16 << 20)
    }
}
