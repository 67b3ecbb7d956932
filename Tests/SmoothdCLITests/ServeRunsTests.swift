import Foundation
import SmoothdJSON
import SmoothdTesting
import Testing

/// `serve` fed Fixtures/runs in the reference's order (each re-run after what it supersedes, in a second start):
/// totals.json's groups are text-for-text `eval --json`'s over the same files and match the independent NumPy
/// reference; each summary records its group; the superseded records are in OUTPUT/superseded/ and counted.
@Suite(.serialized) struct ServeRunsTests {
    /// Runs `smoothd serve --exit-when-idle` on `dir/spool` with the options of `runsCase`; returns its log.
    func serve(_ runsCase: RunsCase, _ dir: URL, _ extra: [String] = []) throws -> String {
        let result = try runSmoothd(
            ["serve", "--spool", dir.appendingPathComponent("spool").path, "--output", dir.appendingPathComponent("out").path,
             "--metrics-listen", "none", "--exit-when-idle", "--textfile", dir.appendingPathComponent("metrics.prom").path]
                + Array(runsCase.arguments(json: false).dropFirst().prefix { !$0.hasPrefix("runs/") }) + extra,
            in: dir)
        #expect(result.status == 0, "\(result.stderr)")
        return result.stderr
    }

    /// Copies the fixture `file` (relative to Fixtures/) into the spool under its base name, as a producer renames it.
    func drop(_ file: String, into dir: URL) throws {
        let name = URL(fileURLWithPath: file).lastPathComponent
        let spool = dir.appendingPathComponent("spool")
        try FileManager.default.createDirectory(at: spool, withIntermediateDirectories: true)
        let temporary = spool.appendingPathComponent("." + name + ".part")
        try FileManager.default.copyItem(at: fixturesDirectory.appendingPathComponent(file), to: temporary)
        try FileManager.default.moveItem(at: temporary, to: spool.appendingPathComponent(name))
    }

    @Test(arguments: [runsCases[0], runsCases[3], runsCases[4]])
    func totalsGroupsAreEvalsAndTheReferences(_ runsCase: RunsCase) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("smoothd-serve-runs-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let expected = runsCase.expected
        let reruns = Set(expected["superseded"]!.arrayValue!.map { $0["by"]!.stringValue! })
        for file in runFiles where !reruns.contains(file) { try drop(file, into: dir) }
        _ = try serve(runsCase, dir)
        for file in runFiles where reruns.contains(file) { try drop(file, into: dir) }
        let log = try serve(runsCase, dir)

        let out = dir.appendingPathComponent("out")
        let totalsBytes = try Data(contentsOf: out.appendingPathComponent("totals.json"))
        let totals = try JSONValue.parse(utf8: totalsBytes)
        let eval = try runSmoothd(runsCase.arguments(), in: fixturesDirectory)
        let evalGroups = try #require(try JSONValue.parse(eval.stdout)["groups"]?.arrayValue)
        let groups = try #require(totals["groups"]?.arrayValue)
        #expect(groups.map { $0.serialized() } == evalGroups.map { $0.serialized() }, "totals.json groups are eval's, bit for bit")

        let expectedGroups = try #require(expected["groups"]?.arrayValue)
        #expect(groups.count == expectedGroups.count)
        for (group, wanted) in zip(groups, expectedGroups) {
            let context = "\(runsCase) serve group \(wanted["key"]!.serialized())"
            #expect(group["key"] == wanted["key"], "\(context)")
            #expect(group["shards"] == wanted["shards"], "\(context)")
            #expect(group["completeness"] == wanted["completeness"], "\(context)")
            expectMetricsMatch(group, wanted, mode: runsCase.mode, context)
            for file in wanted["files"]!.arrayValue!.map({ $0.stringValue! }) {
                let name = URL(fileURLWithPath: file).lastPathComponent + (file == "runs/rerun/plain-0.lshd.zst" ? "~2" : "")
                let summary = try JSONValue.parse(utf8: Data(contentsOf: out.appendingPathComponent(name + ".summary.json")))
                #expect(summary["group"] == wanted["key"], "\(context): \(name) records its group")
            }
        }
        #expect(totals["shards_ok"] == expected["total"]?["shards_ok"])
        #expect(totals["shards_failed"] == expected["total"]?["shards_failed"])
        expectMetricsMatch(totals, expected["total"]!, mode: runsCase.mode, "\(runsCase) serve total")

        for supersession in expected["superseded"]!.arrayValue! {
            let old = URL(fileURLWithPath: supersession["superseded"]!.stringValue!).lastPathComponent
            let moved = out.appendingPathComponent("superseded/" + old + ".summary.json")
            #expect(FileManager.default.fileExists(atPath: moved.path), "\(old) kept in superseded/")
            #expect(!FileManager.default.fileExists(atPath: out.appendingPathComponent(old + ".summary.json").path), "\(old) no longer current")
            let by = URL(fileURLWithPath: supersession["by"]!.stringValue!).lastPathComponent
            #expect(log.split(separator: "\n").contains { $0.contains("supersedes") && $0.contains(old) && $0.contains(by) }, "a warning names \(old) and \(by)")
        }
        let metrics = try String(contentsOf: dir.appendingPathComponent("metrics.prom"), encoding: .utf8)
        #expect(metrics.split(separator: "\n").contains("smoothd_superseded_records_total 2"), "\(metrics)")

        // A start with nothing new rebuilds the same totals from the summaries.
        _ = try serve(runsCase, dir)
        #expect(try Data(contentsOf: out.appendingPathComponent("totals.json")) == totalsBytes, "totals rebuilt at start are the same")
    }

    /// Non-finite rows are loud in serve as in eval: a warning naming the shard with its count, and
    /// `smoothd_nonfinite_rows_total`; with `--fail-on-nonfinite` the shard goes to `failed/` with an error record
    /// of kind `nonfinite_rows` and no summary. The file and its count are the reference's warning.
    @Test func nonfiniteRowsAreLoudAndFailOnRequest() throws {
        let runsCase = runsCases[0]
        let warning = try #require(runsCase.expected["warnings"]?.arrayValue?.first { $0["kind"]?.stringValue == "nonfinite_rows" })
        let file = try #require(warning["file"]?.stringValue)
        let name = URL(fileURLWithPath: file).lastPathComponent
        let count = try #require(warning["nonfinite_rows"]?.intValue)
        for failing in [false, true] {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("smoothd-serve-nonfinite-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: dir) }
            try drop(file, into: dir)
            let log = try serve(runsCase, dir, failing ? ["--fail-on-nonfinite"] : [])
            let out = dir.appendingPathComponent("out")
            let summary = out.appendingPathComponent(name + ".summary.json")
            if failing {
                let record = try JSONValue.parse(utf8: Data(contentsOf: out.appendingPathComponent(name + ".error.json")))
                #expect(record["error"]?["kind"]?.stringValue == "nonfinite_rows", "\(record.serialized())")
                #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent("spool/failed/" + name).path), "kept in failed/")
                #expect(!FileManager.default.fileExists(atPath: summary.path), "no summary for a rejected shard")
            } else {
                #expect(FileManager.default.fileExists(atPath: summary.path))
                let warned = log.split(separator: "\n").contains {
                    $0.contains("non-finite") && $0.contains(name) && $0.contains("nonfinite_rows=\(count)")
                }
                #expect(warned, "a warning names \(name) and its \(count) non-finite rows:\n\(log)")
                let metrics = try String(contentsOf: dir.appendingPathComponent("metrics.prom"), encoding: .utf8)
                #expect(metrics.split(separator: "\n").contains("smoothd_nonfinite_rows_total \(count)"), "\(metrics)")
            }
        }
    }
}
