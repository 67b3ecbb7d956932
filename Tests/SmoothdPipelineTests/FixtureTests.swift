import SmoothdJSON
import SmoothdMetrics
import SmoothdPipeline
import SmoothdTesting
import Testing

/// Every valid fixture matches the NumPy float64 reference: metrics to 1e-6 relative, ECE to 1e-4,
/// counts exactly, in both smoothing modes, for several k and bin counts.
@Test(arguments: validFixtures)
func validFixtureMatchesReference(_ fixture: ValidFixture) throws {
    let expected = fixture.expected
    for mode in SmoothingMode.allCases {
        for (topK, bins) in [(5, 15), (1, 10), (10, 15)] {
            let metrics = MetricOptions(smoothing: 0.1, mode: mode, reportSmoothing: [0, 0.3], topK: topK, eceBins: bins)
            let outcome = ShardEvaluator(options: EvaluationOptions(metrics: metrics, threads: 2)).evaluate(path: fixture.path)
            guard case .success(let summary) = outcome else {
                Issue.record("\(fixture.file) failed: \(outcome)")
                return
            }
            let entry = ShardEntry(summary, options: metrics).json
            for key in ["num_classes", "rows", "counted_rows", "ignored_rows", "nonfinite_rows"] {
                #expect(entry[key] == expected[key], "\(fixture.file) \(key)")
            }
            #expect(entry["logit_dtype"] == expected["logit_dtype"])
            #expect(entry["label_dtype"] == expected["label_dtype"])
            #expect(entry["meta"] == expected["meta"], "\(fixture.file) meta")
            for key in ["nll", "perplexity", "accuracy", "mean_confidence", "entropy", "brier"] {
                #expect(close(entry[key], expected[key], relative: 1e-6), "\(fixture.file) \(key): \(entry[key]!) vs \(expected[key]!)")
            }
            #expect(close(entry["top_k_accuracy"], expected["top_k_accuracy"]?[String(topK)], relative: 1e-6),
                    "\(fixture.file) top-\(topK)")
            #expect(close(entry["ece"], expected["ece"]?[String(bins)], relative: 1e-4, absolute: 1e-4),
                    "\(fixture.file) ece(\(bins)): \(entry["ece"]!) vs \(expected["ece"]?[String(bins)] ?? .null)")
            let losses = expected["loss"]?[mode.rawValue]
            #expect(close(entry["loss"], losses?["0.1"], relative: 1e-6), "\(fixture.file) loss \(mode)")
            for e in ["0.0", "0.1", "0.3"] {
                #expect(close(entry["losses_by_smoothing"]?[e], losses?[e], relative: 1e-6), "\(fixture.file) loss \(mode) ε=\(e)")
            }
        }
    }
}

/// The contract's worked example, checked against the numbers printed in SHARD-FORMAT.md.
@Test func workedExampleMatchesTheContract() throws {
    let path = fixturesDirectory.appendingPathComponent("valid/worked_example.lshd.zst").path
    for (mode, loss) in [(SmoothingMode.uniform, 0.361773), (.others, 0.431088)] {
        let metrics = MetricOptions(smoothing: 0.1, mode: mode)
        guard case .success(let summary) = ShardEvaluator(options: EvaluationOptions(metrics: metrics, threads: 1)).evaluate(path: path) else {
            Issue.record("worked example failed")
            return
        }
        let entry = ShardEntry(summary, options: metrics).json
        #expect(abs(entry["loss"]!.doubleValue! - loss) < 5e-7)
        #expect(abs(entry["nll"]!.doubleValue! - 0.223144) < 5e-7)
    }
}

/// Every invalid fixture gives its specific error kind and payload offset, whatever the threading.
@Test(arguments: invalidFixtures)
func invalidFixtureGivesItsError(_ fixture: InvalidFixture) throws {
    for (threads, segment) in [(1, nil), (2, nil), (2, 1)] as [(Int, Int?)] {
        var options = EvaluationOptions(threads: threads)
        options.segmentTargetBytes = segment
        let outcome = ShardEvaluator(options: options).evaluate(path: fixture.path)
        guard case .failure(let failure) = outcome else {
            Issue.record("\(fixture.file) was accepted")
            return
        }
        #expect(failure.kind == fixture.kind, "\(fixture.file): \(failure)")
        if let offset = fixture.offset {
            #expect(failure.offset == UInt64(offset), "\(fixture.file): \(failure)")
        } else {
            #expect(failure.offset != nil)
        }
        #expect(!failure.reason.isEmpty)
        if fixture.kind == .zstdError { #expect(failure.reason.hasPrefix("zstd: ")) }
    }
}

/// The same shard gives bit-identical entries for any thread count, memory budget and frame grouping.
@Test(arguments: validFixtures)
func resultsDoNotDependOnThreadsOrBudget(_ fixture: ValidFixture) throws {
    let metrics = MetricOptions(smoothing: 0.1, reportSmoothing: [0.3])
    var reference: JSONValue?
    for threads in [1, 2, 8] {
        for budget in [1, 4096, 64 << 20] {
            for segment in [nil, 1] as [Int?] {
                var options = EvaluationOptions(metrics: metrics, threads: threads, memoryBudget: budget)
                options.segmentTargetBytes = segment
                let entry = withoutTiming(ShardEvaluator(options: options).evaluate(path: fixture.path).entryForTest(metrics))
                if let reference {
                    #expect(entry == reference, "\(fixture.file) threads \(threads) budget \(budget) segment \(String(describing: segment))")
                } else {
                    reference = entry
                }
            }
        }
    }
}

extension ShardOutcome {
    func entryForTest(_ metrics: MetricOptions) -> JSONValue { ReportEntry(self, options: metrics).json }
}
