import Foundation
import SmoothdJSON
import SmoothdMetrics
import SmoothdPipeline
import SmoothdTesting
import Testing

/// Inputs that made the libFuzzer target (`Scripts/fuzz`, Sources/SmoothdFuzz) fail, kept in
/// Fixtures/fuzz-regressions in the fuzzer's own format: a control byte, then either a raw LSHD payload
/// (wrapped here in zstd exactly as the fuzz target wraps it) or the compressed shard file. Each one is
/// evaluated under the settings the fuzzer compares and must give its specific outcome, identically.
/// (`SmoothdFuzz FILE` replays one through every fuzz invariant; `Scripts/fuzz` replays them all under
/// AddressSanitizer and LeakSanitizer before it fuzzes.)
struct FuzzRegression: CustomTestStringConvertible, Sendable {
    enum Outcome: Sendable {
        /// Invalid: this error kind at this payload offset.
        case invalid(kind: String, offset: Int64, reason: String)
        /// Valid: these counts, and every metric a number (null only when no row is counted).
        case valid(rows: Int64, counted: Int64, ignored: Int64, nonfinite: Int64)
    }

    let file: String
    /// What the input broke, and where it was fixed.
    let finding: String
    let outcome: Outcome
    /// Not fixed yet: the test records the failure as a known issue (and fails once it is fixed, as a
    /// reminder to drop this flag).

    var testDescription: String { file }
    var path: String { fixturesDirectory.appendingPathComponent("fuzz-regressions/\(file)").path }
}

let fuzzRegressions: [FuzzRegression] = [
    FuzzRegression(
        file: "header-published-late-many-frames.fuzz",
        finding: """
            A truncated payload split into 4-byte zstd frames crashed the pipeline (precondition "header missing \
            after a successful join") with 2 threads and 1-byte frame groups: the header's fixed part and its \
            metadata ended in different decoder calls, so the header was never published, and the join stopped \
            early when a later group began at a block boundary. Fixed in EvaluationRun.feed.
            """,
        outcome: .invalid(kind: "truncated", offset: 146, reason: "payload ends inside the logits (no end marker) in row 3")),
    FuzzRegression(
        file: "thread-join-leak.fuzz",
        finding: """
            LeakSanitizer reported the carried partial row of a failed frame group as leaked: JoinableThread.join() \
            returned while the exiting thread still held the evaluation run. Fixed in JoinableThread (the body is \
            released before join returns). The leak itself only shows under the fuzzer's leak check.
            """,
        outcome: .invalid(kind: "truncated", offset: 15192, reason: "payload ends inside the logits (no end marker) in row 3")),
    FuzzRegression(
        file: "window-16mib-frame.fuzz",
        finding: """
            A frame declaring a 16 MiB window (zstd --long=24) was valid with the default budget and 1 thread but \
            a zstd_error with a small budget or more frame groups: the window limit scaled with budget and threads. \
            Fixed in EvaluationRun.windowLogMax (8 MiB under every setting).
            """,
        outcome: .invalid(kind: "zstd_error", offset: 0, reason: "zstd: Frame requires too much memory for decoding")),
    FuzzRegression(
        file: "truncated-row-relative-to-frame-group.fuzz",
        finding: """
            A payload truncated inside the logits of row 8, in 1-byte frame groups, reported "row 0" with 2 threads \
            and "row 8" with 1: the row number was part of the text, counted from the start of the frame group's \
            parser, which ShardError.shifted cannot correct. Fixed in ShardParser.finish (the row goes in `row`).
            """,
        outcome: .invalid(kind: "truncated", offset: 418, reason: "payload ends inside the logits (no end marker) in row 8")),
    FuzzRegression(
        file: "num-rows-hidden-by-trailing-bytes.fuzz",
        finding: """
            num_rows 131072 stated, 4 rows, end marker at 196, then 8 more bytes: 1 thread reported the mismatch at \
            196, 2 threads with 1-byte frame groups the trailing bytes at 200, because a parser resumed at a block \
            boundary cannot check num_rows and the join skipped the check for a failed group. Fixed in \
            EvaluationRun.joinSegments (the mismatch at the marker comes first).
            """,
        outcome: .invalid(kind: "num_rows_mismatch", offset: 196, reason: "header states num_rows 131072 but the shard holds 4 rows")),
    FuzzRegression(
        file: "kernel-smoothing-term-overflow.fuzz",
        finding: """
            Finite float32 logits up to 2.5e38 apart: the row kernel sums z − max in float lanes, which overflow \
            to −Inf, so U and W (and every loss, even ε = 0) became Inf and were reported as null with 4 counted \
            rows. Fixed in RowKernel.kernel: when that float sum is not finite it is summed again in double.
            """,
        outcome: .valid(rows: 4, counted: 4, ignored: 0, nonfinite: 0)),
]

/// Every kept fuzz input gives its expected outcome under 1 and 2 threads, tiny and default budgets,
/// and one or many frame groups, with identical report entries.
@Test(arguments: fuzzRegressions)
func fuzzRegressionGivesItsOutcome(_ regression: FuzzRegression) throws {
    let input = Array(try Data(contentsOf: URL(fileURLWithPath: regression.path)))
    let shard = try input.withUnsafeBytes { try FuzzInput($0)?.shardFile() } ?? []
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("fuzz-regression-\(UUID().uuidString).lshd.zst").path
    try Data(shard).write(to: URL(fileURLWithPath: path))
    defer { try? FileManager.default.removeItem(atPath: path) }

    let metrics = MetricOptions(smoothing: 0.1, reportSmoothing: [0, 0.3], topK: 3)
    var reference: JSONValue?
    for (threads, budget, segment) in [(1, EvaluationOptions.defaultMemoryBudget, nil), (2, 1, 1), (2, EvaluationOptions.defaultMemoryBudget, 1),
                                       (1, 4096, nil), (2, EvaluationOptions.defaultMemoryBudget, nil)] as [(Int, Int, Int?)] {
        var options = EvaluationOptions(metrics: metrics, threads: threads, memoryBudget: budget)
        options.segmentTargetBytes = segment
        let entry = withoutTiming(ShardEvaluator(options: options).evaluate(path: path).entryForTest(metrics))
        let setting = "\(regression.file), threads \(threads), budget \(budget), frame groups \(segment.map(String.init) ?? "auto")"
        if let reference {
            #expect(entry == reference, "\(setting): \(entry.serialized()) vs \(reference.serialized())")
            continue
        }
        reference = entry
        switch regression.outcome {
        case .invalid(let kind, let offset, let reason):
            #expect(entry["ok"] == .bool(false), "\(setting): \(entry.serialized())")
            #expect(entry["error"]?["kind"] == .string(kind), "\(setting): \(entry.serialized())")
            #expect(entry["error"]?["offset"] == .int(offset), "\(setting): \(entry.serialized())")
            #expect(entry["error"]?["reason"] == .string(reason), "\(setting): \(entry.serialized())")
        case .valid(let rows, let counted, let ignored, let nonfinite):
            #expect(entry["ok"] == .bool(true), "\(setting): \(entry.serialized())")
            #expect(entry["rows"] == .int(rows) && entry["counted_rows"] == .int(counted), "\(setting)")
            #expect(entry["ignored_rows"] == .int(ignored) && entry["nonfinite_rows"] == .int(nonfinite), "\(setting)")
            // A non-finite double is written as null, which reports reserve for "no row counted".
            let metricKeys = ["loss", "nll", "accuracy", "top_k_accuracy", "mean_confidence", "entropy", "brier", "ece"]
            let nulls = metricKeys.filter { entry[$0]?.doubleValue?.isFinite != true }
                + (entry["losses_by_smoothing"]?.objectMembers ?? []).filter { $0.1.doubleValue?.isFinite != true }.map { "loss at \($0.0)" }
            #expect(counted == 0 || nulls.isEmpty, "\(setting): null metrics \(nulls) with \(counted) counted rows")
        }
    }
}

/// Every input kept in Fixtures/fuzz-regressions has an expected outcome above.
@Test func everyFuzzRegressionHasAnExpectation() throws {
    let kept = try FileManager.default.contentsOfDirectory(atPath: fixturesDirectory.appendingPathComponent("fuzz-regressions").path)
        .filter { $0.hasSuffix(".fuzz") }
    #expect(Set(kept) == Set(fuzzRegressions.map(\.file)), "Fixtures/fuzz-regressions: \(kept.sorted())")
}
