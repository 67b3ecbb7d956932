import Foundation
import SmoothdJSON
import SmoothdMetrics
import SmoothdPipeline
import Testing

// Bootstrap replicates and labels digests through the pipeline: the same bits for any threads, budget and frames.

/// The stats fixtures used here, relative to Fixtures/.
let bootstrapFixtures = ["stats/temp_k10_frames.lshd.zst", "stats/ckpt_a_0.lshd.zst", "stats/temp_k1000_bf16.lshd.zst",
                         "valid/many_frames_one_row_blocks.lshd.zst", "valid/f16_ignore0.lshd.zst"]

func evaluateSummary(_ path: String, metrics: MetricOptions, threads: Int = 1, budget: Int = 64 << 20, segment: Int? = nil) throws -> ShardSummary {
    var options = EvaluationOptions(metrics: metrics, threads: threads, memoryBudget: budget)
    options.segmentTargetBytes = segment
    guard case .success(let summary) = ShardEvaluator(options: options).evaluate(path: path) else {
        Issue.record("\(path) did not evaluate")
        throw CancellationError()
    }
    return summary
}

@Test(arguments: bootstrapFixtures)
func bootstrapStateDoesNotDependOnThreadsBudgetOrSegments(_ file: String) throws {
    let metrics = MetricOptions(eceBins: 10, bootstrapReplicates: 20)
    let path = fixturesDirectory.appendingPathComponent(file).path
    let reference = try evaluateSummary(path, metrics: metrics)
    let referenceState = reference.accumulator.jsonState()
    #expect(reference.accumulator.bootstrap?.replicates == 20)
    #expect(reference.accumulator.bootstrap!.weights.contains { $0 > 0 })
    for threads in [1, 2, 8] {
        for budget in [1, 4096, 64 << 20] {
            for segment in [nil, 1] as [Int?] {
                let summary = try evaluateSummary(path, metrics: metrics, threads: threads, budget: budget, segment: segment)
                let label = "\(file) threads \(threads) budget \(budget) segment \(String(describing: segment))"
                #expect(summary.accumulator == reference.accumulator, "\(label)")
                #expect(summary.accumulator.jsonState() == referenceState, "\(label)")
                #expect(summary.labelsDigest == reference.labelsDigest, "\(label)")
                #expect(MetricReport(summary.accumulator, options: metrics).intervals == MetricReport(reference.accumulator, options: metrics).intervals)
            }
        }
    }
    // Without bootstrap the point metrics are the same: the replicates change nothing else.
    let plain = try evaluateSummary(path, metrics: MetricOptions(eceBins: 10), threads: 2, segment: 1)
    var stripped = reference.accumulator
    stripped.bootstrap = nil
    #expect(plain.accumulator == stripped)
    #expect(plain.labelsDigest == reference.labelsDigest)
}

@Test func bootstrapStateDoesNotDependOnTheFrameLayout() throws {
    // temp_k10_frames holds temp_k10's rows in other frames and blocks; under temp_k10's name it draws the same weights.
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("smoothd-frames-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: directory) }
    let renamed = directory.appendingPathComponent("temp_k10.lshd.zst").path
    try FileManager.default.copyItem(atPath: fixturesDirectory.appendingPathComponent("stats/temp_k10_frames.lshd.zst").path, toPath: renamed)
    let metrics = MetricOptions(bootstrapReplicates: 25)
    let single = try evaluateSummary(fixturesDirectory.appendingPathComponent("stats/temp_k10.lshd.zst").path, metrics: metrics)
    let framed = try evaluateSummary(renamed, metrics: metrics, threads: 2, budget: 4096)
    #expect(single.frames == 1 && framed.frames == 4)
    #expect(single.accumulator == framed.accumulator)
    #expect(single.labelsDigest == framed.labelsDigest && single.labelsDigest.rows == 5000)
    // Under its own name the seed (the base name, as it has no shard_index) differs: other weights, same point sums.
    let own = try evaluateSummary(fixturesDirectory.appendingPathComponent("stats/temp_k10_frames.lshd.zst").path, metrics: metrics)
    #expect(own.accumulator.bootstrap != single.accumulator.bootstrap)
    #expect(own.accumulator.nllSum == single.accumulator.nllSum)
}

@Test func labelsDigestTellsTheSameRowsApart() throws {
    let metrics = MetricOptions()
    for i in 0..<3 {
        func digest(_ name: String) throws -> LabelDigest {
            try evaluateSummary(fixturesDirectory.appendingPathComponent("stats/ckpt_\(name)_\(i).lshd.zst").path, metrics: metrics, threads: 2, segment: 1).labelsDigest
        }
        let a = try digest("a"), b = try digest("b"), u = try digest("u")
        // The fixtures' README: b has a's labels, u other ones; rows 8000, 7000, 6000.
        #expect(a == b)
        #expect(a != u)
        #expect(a.rows == UInt64(8000 - 1000 * i) && u.rows == a.rows)
    }
}
