import SmoothdJSON
import SmoothdMetrics
import SmoothdPipeline
import SmoothdTesting
import Testing

/// Every valid fixture's `mce` and `reliability` bins match the NumPy reference, for both bin counts it states:
/// edges, counts and per-bin accuracy exactly (to 1e-9), mean confidence to 1e-6 relative (as the overall mean), MCE to 1e-4 (as ECE).
@Test(arguments: validFixtures)
func reliabilityBinsMatchReference(_ fixture: ValidFixture) throws {
    for bins in [15, 10] {
        let metrics = MetricOptions(smoothing: 0.1, topK: 5, eceBins: bins)
        let outcome = ShardEvaluator(options: EvaluationOptions(metrics: metrics, threads: 2)).evaluate(path: fixture.path)
        guard case .success(let summary) = outcome else {
            Issue.record("\(fixture.file) failed: \(outcome)")
            return
        }
        let entry = ShardEntry(summary, options: metrics).json
        let context = "\(fixture.file) with \(bins) bins"
        #expect(close(entry["mce"], fixture.expected["mce"]?[String(bins)], relative: 1e-4, absolute: 1e-4),
                "\(context) mce: \(entry["mce"] ?? .null) vs \(fixture.expected["mce"]?[String(bins)] ?? .null)")
        let got = try #require(entry["reliability"]?.arrayValue, "\(context): no reliability array")
        let want = try #require(fixture.expected["reliability"]?[String(bins)]?.arrayValue)
        #expect(got.count == want.count, "\(context): \(got.count) bins")
        for (b, (g, w)) in zip(got, want).enumerated() {
            #expect(g.objectMembers?.map(\.0) == ["lower", "upper", "count", "accuracy", "mean_confidence"], "\(context) bin \(b) keys")
            #expect(g["lower"] == w["lower"] && g["upper"] == w["upper"], "\(context) bin \(b) edges")
            #expect(g["count"] == w["count"], "\(context) bin \(b) count: \(g["count"] ?? .null) vs \(w["count"] ?? .null)")
            #expect(close(g["accuracy"], w["accuracy"], relative: 1e-9), "\(context) bin \(b) accuracy")
            #expect(close(g["mean_confidence"], w["mean_confidence"], relative: 1e-6), "\(context) bin \(b) mean_confidence")
        }
    }
}
