import Foundation
import SmoothdJSON
import SmoothdTesting
import Testing

/// Fixtures/runs/expected.json, written by the independent NumPy reference (Fixtures/make_run_fixtures.py).
let runsExpected: JSONValue = {
    let data = try! Data(contentsOf: fixturesDirectory.appendingPathComponent("runs/expected.json"))
    return try! JSONValue.parse(utf8: data)
}()

/// The shard files in the reference's order (relative to Fixtures/).
let runFiles: [String] = runsExpected["files"]!.arrayValue!.map { $0["file"]!.stringValue! }

struct RunsCase: CustomTestStringConvertible, Sendable {
    let groupBy: String
    let mode: String
    var testDescription: String { "--group-by \(groupBy), \(mode)" }
    var expected: JSONValue { runsExpected["group_by"]![groupBy]! }

    /// `eval` with the options expected.json was made with; the default group-by is not passed.
    func arguments(json: Bool = true, extra: [String] = []) -> [String] {
        ["eval"] + (json ? ["--json"] : []) + ["--smoothing", "0.1", "--smoothing-mode", mode, "--report-smoothing", "0", "--top-k", "5", "--ece-bins", "15"]
            + (groupBy == "model,checkpoint,split" ? [] : ["--group-by", groupBy]) + extra + runFiles
    }
}

let runsCases: [RunsCase] = ["model,checkpoint,split", "model", "none"].flatMap { g in ["uniform", "others"].map { RunsCase(groupBy: g, mode: $0) } }

/// Counts exactly, metrics within FixtureTests' tolerances (1e-6 relative; ECE 1e-4).
func expectMetricsMatch(_ actual: JSONValue, _ expected: JSONValue, mode: String, _ context: String) {
    for key in ["rows", "counted_rows", "ignored_rows", "nonfinite_rows"] {
        #expect(actual[key] == expected[key], "\(context) \(key)")
    }
    for key in ["nll", "perplexity", "accuracy", "mean_confidence", "entropy", "brier"] {
        #expect(close(actual[key], expected[key], relative: 1e-6), "\(context) \(key): \(actual[key] ?? .null) vs \(expected[key] ?? .null)")
    }
    #expect(close(actual["top_k_accuracy"], expected["top_k_accuracy"]?["5"], relative: 1e-6), "\(context) top-5")
    #expect(close(actual["ece"], expected["ece"]?["15"], relative: 1e-4, absolute: 1e-4), "\(context) ece")
    let losses = expected["loss"]?[mode]
    #expect(close(actual["loss"], losses?["0.1"], relative: 1e-6), "\(context) loss")
    #expect(actual["losses_by_smoothing"]?.objectMembers?.map(\.0) == ["0.1", "0.0"], "\(context) losses_by_smoothing keys")
    for e in ["0.1", "0.0"] {
        #expect(close(actual["losses_by_smoothing"]?[e], losses?[e], relative: 1e-6), "\(context) loss ε=\(e)")
    }
}

/// eval --json over the run fixtures gives the reference's groups (order, keys, shard counts, completeness,
/// metrics), total, error entries and warnings, for every group-by and both modes.
@Test(arguments: runsCases)
func evalGroupsMatchTheReference(_ runsCase: RunsCase) throws {
    let result = try runSmoothd(runsCase.arguments(), in: fixturesDirectory)
    let expected = runsCase.expected
    #expect(result.status == 1, "the set has invalid shards: \(result.stderr)")
    let document = try JSONValue.parse(result.stdout)
    let groups = try #require(document["groups"]?.arrayValue)
    let expectedGroups = try #require(expected["groups"]?.arrayValue)
    #expect(groups.count == expectedGroups.count)
    let entries = try #require(document["shards"]?.arrayValue)
    #expect(entries.map { $0["shard"]?.stringValue } == runFiles, "one entry per file, in the order given")
    func entry(_ file: String) -> JSONValue? { entries.first { $0["shard"]?.stringValue == file } }
    for (group, wanted) in zip(groups, expectedGroups) {
        let context = "\(runsCase) group \(wanted["key"]!.serialized())"
        #expect(group["key"] == wanted["key"], "\(context): key \(group["key"] ?? .null)")
        #expect(group["shards"] == wanted["shards"], "\(context)")
        #expect(group["completeness"] == wanted["completeness"], "\(context) completeness \(group["completeness"] ?? .null)")
        expectMetricsMatch(group, wanted, mode: runsCase.mode, context)
        for file in wanted["files"]!.arrayValue!.map({ $0.stringValue! }) {
            #expect(entry(file)?["group"] == wanted["key"], "\(context): \(file) records its group")
            #expect(entry(file)?["superseded_by"] == nil, "\(context): \(file) is live")
        }
    }
    let total = try #require(document["total"])
    #expect(total["shards_ok"] == expected["total"]?["shards_ok"])
    #expect(total["shards_failed"] == expected["total"]?["shards_failed"])
    expectMetricsMatch(total, expected["total"]!, mode: runsCase.mode, "\(runsCase) total")

    let errors = expected["errors"]!.arrayValue!
    #expect(entries.filter { $0["ok"] == .bool(false) }.count == errors.count)
    for error in errors {
        let file = error["file"]!.stringValue!
        #expect(entry(file)?["ok"] == .bool(false), "\(file)")
        #expect(entry(file)?["error"]?["kind"] == error["kind"], "\(file) kind")
        #expect(entry(file)?["error"]?["offset"] == error["offset"], "\(file) offset")
        #expect(entry(file)?["error"]?["reason"]?.stringValue?.contains(error["key"]!.stringValue!) == true, "\(file) reason names the key")
    }

    // stderr: one warning per re-run, per disagreeing run and per shard with non-finite rows; nothing else.
    let warnings = result.stderr.split(separator: "\n").filter { $0.hasPrefix("smoothd: warning: ") }.map(String.init)
    let superseded = expected["superseded"]!.arrayValue!
    let others = expected["warnings"]!.arrayValue!
    #expect(warnings.count == superseded.count + others.count, "\(warnings)")
    for s in superseded {
        let old = s["superseded"]!.stringValue!, new = s["by"]!.stringValue!
        #expect(entry(old)?["superseded_by"] == .string(new), "\(old) is marked superseded")
        #expect(warnings.contains { $0.contains(old) && $0.contains(new) && $0.contains("supersedes") }, "warning names \(old) and \(new)")
    }
    for w in others {
        switch w["kind"]?.stringValue {
        case "num_shards_disagree":
            let files = w["shards"]!.arrayValue!.map { $0["file"]!.stringValue! }
            #expect(warnings.contains { line in line.contains("num_shards") && files.allSatisfy { line.contains($0) } }, "\(files)")
        case "nonfinite_rows":
            let file = w["file"]!.stringValue!
            let text = "\(w["nonfinite_rows"]!.intValue!) of \(w["rows"]!.intValue!) rows (fraction \(w["fraction"]!.doubleValue!)"
            #expect(warnings.contains { $0.contains(file) && $0.contains(text) }, "non-finite warning for \(file): \(warnings)")
        default:
            Issue.record("unknown warning kind in expected.json: \(w)")
        }
    }

    // --json lists the same warnings as objects: the reference's kinds and files, each message a stderr line.
    let listed = try #require(document["warnings"]?.arrayValue)
    let wanted: [(kind: String, shards: [String])] = superseded.map { ("superseded", [$0["superseded"]!.stringValue!, $0["by"]!.stringValue!]) }
        + others.map { w in
            (w["kind"]!.stringValue!, w["kind"] == .string("nonfinite_rows") ? [w["file"]!.stringValue!] : w["shards"]!.arrayValue!.map { $0["file"]!.stringValue! })
        }
    #expect(listed.map { $0["kind"]?.stringValue ?? "" } == wanted.map(\.kind), "\(listed)")
    #expect(listed.map { $0["shards"]?.arrayValue?.compactMap(\.stringValue) ?? [] } == wanted.map(\.shards))
    #expect(listed.map { "smoothd: warning: " + ($0["message"]?.stringValue ?? "") } == warnings, "the messages are the stderr lines")
}

/// With --fail-on-nonfinite the shard with non-finite rows is invalid (kind nonfinite_rows, exit 1) and not counted;
/// without it, it is counted with a warning and exit 0.
@Test func failOnNonfiniteTurnsTheWarningIntoAFailure() throws {
    let file = "runs/lm-b.1000.validation.r1.lshd.zst"
    let plain = try runSmoothd(["eval", "--json", file, "runs/lm-b.1000.validation.r0.lshd.zst"], in: fixturesDirectory)
    #expect(plain.status == 0, "\(plain.stderr)")
    #expect(plain.stderr.contains("smoothd: warning: \(file): 5 of 87 rows"))
    let plainTotal = try JSONValue.parse(plain.stdout)["total"]
    #expect(plainTotal?["shards_ok"] == .int(2))
    #expect(plainTotal?["nonfinite_rows"] == .int(5))

    let strict = try runSmoothd(["eval", "--json", "--fail-on-nonfinite", file, "runs/lm-b.1000.validation.r0.lshd.zst"], in: fixturesDirectory)
    #expect(strict.status == 1)
    #expect(!strict.stderr.contains("warning"), "a failure, not also a warning: \(strict.stderr)")
    let document = try JSONValue.parse(strict.stdout)
    let entry = document["shards"]?.arrayValue?.first
    #expect(entry?["ok"] == .bool(false))
    #expect(entry?["error"]?["kind"] == .string("nonfinite_rows"))
    #expect(entry?["error"]?["offset"] == .null)
    #expect(entry?["error"]?["reason"]?.stringValue?.contains("5 of 87 rows") == true)
    #expect(document["total"]?["shards_ok"] == .int(1))
    #expect(document["total"]?["shards_failed"] == .int(1))
    #expect(document["total"]?["nonfinite_rows"] == .int(0))
    #expect(document["groups"]?.arrayValue?.first?["shards"] == .int(1))
}

/// pytorch is uniform and fairseq is others: the same numbers, reported under the canonical name.
@Test(arguments: [("pytorch", "uniform"), ("fairseq", "others")])
func smoothingModeAliases(_ alias: String, _ mode: String) throws {
    let files = ["runs/lm-a.ckpt-100.validation.r0.lshd.zst", "runs/lm-b.100.validation.r0.lshd.zst"]
    let viaAlias = try runSmoothd(["eval", "--json", "--smoothing-mode", alias] + files, in: fixturesDirectory)
    let direct = try runSmoothd(["eval", "--json", "--smoothing-mode", mode] + files, in: fixturesDirectory)
    #expect(viaAlias.status == 0 && direct.status == 0, "\(viaAlias.stderr)")
    let a = try JSONValue.parse(viaAlias.stdout), b = try JSONValue.parse(direct.stdout)
    #expect(a["total"] == b["total"])
    #expect(a["groups"] == b["groups"])
    #expect(a["total"]?["smoothing_mode"] == .string(mode))
    let table = try runSmoothd(["eval", "--smoothing-mode", alias] + files, in: fixturesDirectory)
    #expect(table.stdout.hasPrefix("loss: label-smoothed cross-entropy, ε = 0.1, mode \(mode) ("), "\(table.stdout)")
}

/// The table: the loss it shows, one block per group with completeness, ignored and nonfinite columns,
/// superseded shards marked, errors at the end.
@Test func tablePrintsOneBlockPerGroup() throws {
    let result = try runSmoothd(RunsCase(groupBy: "model,checkpoint,split", mode: "others").arguments(json: false), in: fixturesDirectory)
    #expect(result.status == 1)
    let out = result.stdout
    #expect(out.hasPrefix("loss: label-smoothed cross-entropy, ε = 0.1, mode others (fairseq"))
    let expectedGroups = RunsCase(groupBy: "model,checkpoint,split", mode: "others").expected["groups"]!.arrayValue!
    let titles = out.split(separator: "\n").filter { $0.hasPrefix("group ") }
    #expect(titles.count == expectedGroups.count, "\(titles)")
    #expect(titles.first == "group model=null checkpoint=null split=null: 2 shards")
    #expect(titles.contains(#"group model="lm-a" checkpoint="ckpt-1000" split="validation": 3 shards, INCOMPLETE (3 of 4 ranks; missing [2])"#))
    #expect(titles.contains(#"group model="lm-b" checkpoint=100 split="validation": 3 shards, complete (3 of 3 ranks)"#))
    let header = try #require(out.split(separator: "\n").first { $0.hasPrefix("shard ") })
    #expect(Array(header.split(separator: " ").prefix(6)) == ["shard", "rows", "counted", "ignored", "nonfinite", "loss"])
    #expect(out.contains("subtotal (4 shards)"))
    #expect(out.contains("runs/lm-a.ckpt-250.validation.r1.lshd.zst") && out.contains("superseded by runs/lm-a.ckpt-250.validation.r1.rerun.lshd.zst"))
    #expect(out.contains("runs/lm-b.1000.mixed-splits.lshd.zst: invalid: meta key 'split' is an array"))
    #expect(out.contains("total (25 ok, 2 invalid)"))
}

/// One group prints one block, as before; an unknown --group-by form is a usage error.
@Test func oneGroupIsOneBlockAndBadGroupByIsAUsageError() throws {
    let result = try runSmoothd(["eval", "--group-by", "none", "runs/plain-0.lshd.zst", "runs/lm-a.adhoc.lshd.zst"], in: fixturesDirectory)
    #expect(result.status == 0, "\(result.stderr)")
    #expect(result.stdout.split(separator: "\n").filter { $0.hasPrefix("group ") } == ["group (all shards): 2 shards"])
    for bad in ["model,,split", "model,model", "none,model", ""] {
        #expect(try runSmoothd(["eval", "--group-by", bad, "runs/plain-0.lshd.zst"], in: fixturesDirectory).status == 64, "\(bad)")
    }
}

/// Each group's numbers are bit-identical to `eval --group-by none` over just its live shards.
@Test func groupsAreBitIdenticalToEvalOverTheirShards() throws {
    let options = ["--smoothing-mode", "others", "--report-smoothing", "0,0.3"]
    let all = try runSmoothd(["eval", "--json"] + options + runFiles, in: fixturesDirectory)
    let groups = try #require(try JSONValue.parse(all.stdout)["groups"]?.arrayValue)
    let entries = try #require(try JSONValue.parse(all.stdout)["shards"]?.arrayValue)
    #expect(groups.count == 10)
    for group in groups {
        let files = entries.filter { $0["group"] == group["key"] && $0["superseded_by"] == nil }.map { $0["shard"]!.stringValue! }
        #expect(.int(Int64(files.count)) == group["shards"])
        let alone = try runSmoothd(["eval", "--json", "--group-by", "none"] + options + files, in: fixturesDirectory)
        #expect(alone.status == 0, "\(alone.stderr)")
        let total = try #require(try JSONValue.parse(alone.stdout)["total"]?.objectMembers)
        let members = Dictionary(uniqueKeysWithValues: total)
        for (key, value) in group.objectMembers! where !["key", "shards", "completeness"].contains(key) {
            #expect(members[key] == value, "\(group["key"]!.serialized()) \(key): \(members[key] ?? .null) vs \(value)")
        }
        #expect(try JSONValue.parse(alone.stdout)["groups"]?.arrayValue?.first?["rows"] == group["rows"])
    }
}
