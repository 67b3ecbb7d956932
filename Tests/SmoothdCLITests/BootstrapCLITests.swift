import Foundation
import SmoothdJSON
import SmoothdTesting
import Testing

// Bootstrap intervals and `smoothd compare` against Fixtures/stats/expected.json, written by the independent NumPy
// reference (Fixtures/stats_reference.py): analytic standard errors and the point values of the differences. The
// reference's own bootstrap uses another generator, so intervals are checked statistically (widths), never value by value.

/// `Fixtures/stats/expected.json`.
let statsExpected: JSONValue = {
    let data = try! Data(contentsOf: fixturesDirectory.appendingPathComponent("stats/expected.json"))
    return try! JSONValue.parse(utf8: data)
}()

/// The three shards of checkpoint `name` (a, b or u).
func checkpointFiles(_ name: String) -> [String] { (0..<3).map { "stats/ckpt_\(name)_\($0).lshd.zst" } }

/// `eval --json --bootstrap 200` of checkpoints a, b and u, written once into a scratch directory.
let bootstrapScratch: MergeScratch = {
    let scratch = try! MergeScratch()
    for name in ["a", "b", "u"] {
        let result = try! runSmoothd(["eval", "--json", "--bootstrap", "200"] + checkpointFiles(name), in: fixturesDirectory)
        precondition(result.status == 0, "eval: \(result.stderr)")
        try! scratch.write("\(name).json", result.stdout)
    }
    return scratch
}()

/// `smoothd compare --json` with `arguments`, parsed (the run must exit 0).
func compareJSON(_ arguments: [String]) throws -> JSONValue {
    let result = try runSmoothd(["compare", "--json"] + arguments, in: fixturesDirectory)
    #expect(result.status == 0, "compare: \(result.stderr)")
    return try JSONValue.parse(result.stdout)
}

/// The width of an `[lower, upper]` interval.
func width(_ interval: JSONValue?) -> Double {
    let pair = interval!.arrayValue!
    return pair[1].doubleValue! - pair[0].doubleValue!
}

@Test func bootstrapWidthsMatchTheAnalyticStandardErrorOnTheLargeFixture() throws {
    let document = try evalJSON(["stats/boot_large.lshd.zst"], extra: ["--bootstrap", "200"])
    let se = statsExpected["files"]!["stats/boot_large.lshd.zst"]!["results"]!["uniform_b15"]!["standard_errors"]!
    for place in [document["shards"]!.arrayValue![0], document["total"]!, document["groups"]!.arrayValue![0]] {
        for metric in ["nll", "accuracy"] {
            let ratio = width(place["intervals"]![metric]) / (3.92 * se[metric]!.doubleValue!)
            #expect(abs(ratio - 1) <= 0.15, "\(metric): width / (3.92 SE) = \(ratio)")
        }
        // Each interval holds its point value.
        for metric in ["loss", "nll", "accuracy", "ece"] {
            let pair = place["intervals"]![metric]!.arrayValue!, value = place[metric]!.doubleValue!
            #expect(pair[0].doubleValue! <= value && value <= pair[1].doubleValue!, "\(metric) \(value) outside \(pair)")
        }
    }
}

@Test func pairedCompareMatchesTheReferenceAndIsFarNarrower() throws {
    let a = bootstrapScratch.sub("a.json"), b = bootstrapScratch.sub("b.json")
    let compared = try compareJSON(["--bootstrap", "200", "--a", "checkpoint=a", "--b", "checkpoint=b", a, b])
    let expected = statsExpected["compare"]!["ckpt_a_vs_b"]!["results"]!["uniform_b15"]!
    #expect(compared["paired"] == .bool(true))
    #expect(compared["a"]!["checkpoint"] == .string("a") && compared["b"]!["checkpoint"] == .string("b"))
    #expect(compared["bootstrap"] == .int(200))
    for metric in ["loss", "nll", "accuracy", "top_k_accuracy", "ece"] {
        let got = compared["differences"]![metric]!, want = expected["differences"]![metric]!
        // The point values to the kernel's accuracy (1e-6 relative, as every fixture test); their difference to 1e-9.
        for key in ["a", "b"] {
            let (x, y) = (got[key]!.doubleValue!, want[key]!.doubleValue!)
            #expect(abs(x - y) <= 1e-6 * abs(y), "\(metric).\(key)")
        }
        #expect(abs(got["difference"]!.doubleValue! - want["difference"]!.doubleValue!) <= 1e-9, "\(metric).difference")
    }
    for metric in ["nll", "accuracy"] {
        let se = expected["differences"]![metric]!
        let ratio = width(compared["differences"]![metric]!["interval"]) / (3.92 * se["se_paired"]!.doubleValue!)
        #expect(abs(ratio - 1) <= 0.15, "paired \(metric): width / (3.92 SE) = \(ratio)")
    }

    // The same states without the labels digests cannot be paired: independent replicates, and far wider intervals.
    func withoutDigests(_ file: String, _ name: String) throws -> String {
        let document = try JSONValue.parse(String(contentsOfFile: file, encoding: .utf8))
        let shards = document["shards"]!.arrayValue!.map { JSONValue.object($0.objectMembers!.filter { $0.0 != "labels_digest" }) }
        let members = document.objectMembers!.map { $0.0 == "shards" ? ($0.0, JSONValue.array(shards)) : $0 }
        return try bootstrapScratch.write(name, JSONValue.object(members).serialized())
    }
    let unpaired = try compareJSON(["--bootstrap", "200", "--a", "checkpoint=a", "--b", "checkpoint=b", a, try withoutDigests(b, "b-nodigest.json")])
    #expect(unpaired["paired"] == .bool(false))
    #expect(unpaired["pairing"]!.stringValue!.contains("has no labels_digest"))
    for metric in ["loss", "nll", "accuracy", "top_k_accuracy", "ece"] {
        let paired = width(compared["differences"]![metric]!["interval"]), independent = width(unpaired["differences"]![metric]!["interval"])
        #expect(paired < 0.75 * independent, "\(metric): paired \(paired) vs unpaired \(independent)")
        #expect(unpaired["differences"]![metric]!["difference"] == compared["differences"]![metric]!["difference"])
    }
    for metric in ["nll", "accuracy"] {
        let se = expected["differences"]![metric]!["se_unpaired"]!.doubleValue!
        let ratio = width(unpaired["differences"]![metric]!["interval"]) / (3.92 * se)
        #expect(abs(ratio - 1) <= 0.15, "unpaired \(metric): width / (3.92 SE) = \(ratio)")
    }
}

@Test func compareOfOtherRowsIsUnpairedAndSaysWhy() throws {
    let compared = try compareJSON(["--bootstrap", "200", "--a", "checkpoint=a", "--b", "checkpoint=u",
                                    bootstrapScratch.sub("a.json"), bootstrapScratch.sub("u.json")])
    let expected = statsExpected["compare"]!["ckpt_a_vs_u"]!["results"]!["uniform_b15"]!
    #expect(compared["paired"] == .bool(false) && expected["paired"] == .bool(false))
    #expect(compared["pairing"]!.stringValue!.contains("the labels differ"), "\(compared["pairing"]!)")
    for metric in ["loss", "nll", "accuracy", "top_k_accuracy", "ece"] {
        let got = compared["differences"]![metric]!, want = expected["differences"]![metric]!
        #expect(abs(got["difference"]!.doubleValue! - want["difference"]!.doubleValue!) <= 1e-9, "\(metric)")
    }
    for metric in ["nll", "accuracy"] {
        let ratio = width(compared["differences"]![metric]!["interval"]) / (3.92 * expected["differences"]![metric]!["se_unpaired"]!.doubleValue!)
        #expect(abs(ratio - 1) <= 0.15, "\(metric): width / (3.92 SE) = \(ratio)")
    }
}

@Test func compareWithoutBootstrapHasNullIntervals() throws {
    let files = checkpointFiles("a") + checkpointFiles("b")
    let compared = try compareJSON(["--a", "checkpoint=a", "--b", "checkpoint=b"] + files)
    let expected = statsExpected["compare"]!["ckpt_a_vs_b"]!["results"]!["uniform_b15"]!
    #expect(compared["bootstrap"] == .null && compared["paired"] == .bool(true))
    for metric in ["loss", "nll", "accuracy", "top_k_accuracy", "ece"] {
        #expect(compared["differences"]![metric]!["interval"] == .null)
        #expect(abs(compared["differences"]![metric]!["difference"]!.doubleValue! - expected["differences"]![metric]!["difference"]!.doubleValue!) <= 1e-9)
    }
    #expect(compared["differences"]!["perplexity"]!["interval"] == nil)
    let table = try runSmoothd(["compare", "--a", "checkpoint=a", "--b", "checkpoint=b"] + files, in: fixturesDirectory)
    #expect(table.status == 0 && table.stdout.contains("bootstrap: none") && table.stdout.contains("paired: each of the 3 shards"))
}

@Test func compareErrorsNameTheSelectorAndTheGroups() throws {
    let inputs = [bootstrapScratch.sub("a.json"), bootstrapScratch.sub("b.json")]
    let bad = try runSmoothd(["compare", "--bootstrap", "200", "--a", "checkpoint", "--b", "checkpoint=b"] + inputs)
    #expect(bad.status == 64 && bad.stderr.contains("invalid selector 'checkpoint'"), "\(bad.stderr)")
    let ambiguous = try runSmoothd(["compare", "--bootstrap", "200", "--a", "model=stats-lm", "--b", "checkpoint=b"] + inputs)
    #expect(ambiguous.status == 1 && ambiguous.stderr.contains("--a 'model=stats-lm' matches 2 groups"), "\(ambiguous.stderr)")
    #expect(ambiguous.stderr.contains("\"checkpoint\":\"a\"") && ambiguous.stderr.contains("\"checkpoint\":\"b\""))
    let none = try runSmoothd(["compare", "--bootstrap", "200", "--a", "checkpoint=a", "--b", "checkpoint=zzz"] + inputs)
    #expect(none.status == 1 && none.stderr.contains("--b 'checkpoint=zzz' matches no group (the groups: "), "\(none.stderr)")
    let key = try runSmoothd(["compare", "--bootstrap", "200", "--a", "step=1", "--b", "checkpoint=b"] + inputs)
    #expect(key.status == 1 && key.stderr.contains("'step' is not a group-by key"), "\(key.stderr)")
    let same = try runSmoothd(["compare", "--bootstrap", "200", "--a", "checkpoint=b", "--b", "split=validation,checkpoint=b"] + inputs)
    #expect(same.status == 1 && same.stderr.contains("select the same group"), "\(same.stderr)")
    // States of another R do not merge: the error says which flag to pass.
    let mismatch = try runSmoothd(["compare", "--bootstrap", "50", "--a", "checkpoint=a", "--b", "checkpoint=b"] + inputs)
    #expect(mismatch.status == 1 && mismatch.stderr.contains("--bootstrap 200"), "\(mismatch.stderr)")
}

@Test func mergeOfSplitBootstrapStatesEqualsOneEval() throws {
    let scratch = try MergeScratch()
    let files = checkpointFiles("a") + checkpointFiles("b")
    var parts: [String] = []
    for (i, chunk) in [Array(files[0..<1]), Array(files[1..<4]), Array(files[4...])].enumerated() {
        let result = try runSmoothd(["eval", "--json", "--bootstrap", "30", "--threads", "2"] + chunk, in: fixturesDirectory)
        #expect(result.status == 0, "\(result.stderr)")
        parts.append(try scratch.write("part\(i).json", result.stdout))
    }
    let merged = try runSmoothd(["merge", "--json", "--bootstrap", "30"] + parts)
    #expect(merged.status == 0, "\(merged.stderr)")
    let whole = try evalJSON(files, extra: ["--bootstrap", "30", "--threads", "1"])
    let mergedDocument = try JSONValue.parse(merged.stdout)
    #expect(mergedDocument["groups"] == whole["groups"])
    #expect(mergedDocument["total"] == whole["total"])
    #expect(whole["total"]!["state"]!["bootstrap"]!["replicates"] == .int(30))
}

@Test func serveSummariesAndGroupsCarryIntervals() throws {
    let scratch = try MergeScratch()
    let spool = scratch.sub("spool"), output = scratch.sub("out")
    try FileManager.default.createDirectory(atPath: spool, withIntermediateDirectories: true)
    let files = checkpointFiles("a") + checkpointFiles("b")
    for file in files {
        let name = (file as NSString).lastPathComponent
        try FileManager.default.copyItem(atPath: fixturesDirectory.appendingPathComponent(file).path, toPath: spool + "/" + name)
    }
    let served = try runSmoothd(["serve", "--spool", spool, "--output", output, "--metrics-listen", "none", "--exit-when-idle", "--bootstrap", "30"])
    #expect(served.status == 0, "serve: \(served.stderr)")
    let totals = try JSONValue.parse(String(contentsOfFile: output + "/totals.json", encoding: .utf8))
    let groups = totals["groups"]!.arrayValue!
    #expect(groups.count == 2)
    // serve's groups are eval's over the same shards, intervals and replicate sums included.
    let evaluated = try evalJSON(files, extra: ["--bootstrap", "30"])
    for (served, evaluated) in zip(groups, evaluated["groups"]!.arrayValue!) {
        #expect(served["intervals"] != nil && served["intervals"] == evaluated["intervals"])
        #expect(served["state"] == evaluated["state"])
    }
    let summary = try JSONValue.parse(String(contentsOfFile: output + "/ckpt_a_0.lshd.zst.summary.json", encoding: .utf8))
    #expect(summary["intervals"]?["nll"]?.arrayValue?.count == 2)
    #expect(summary["labels_digest"] == evaluated["shards"]!.arrayValue![0]["labels_digest"])
}

@Test func reportShowsIntervalsAndTheComparison() throws {
    let scratch = try MergeScratch()
    let page = scratch.sub("report.html")
    let result = try runSmoothd(["report", "--bootstrap", "200", "--compare-a", "checkpoint=a", "--compare-b", "checkpoint=b", "-o", page,
                                 bootstrapScratch.sub("a.json"), bootstrapScratch.sub("b.json")])
    #expect(result.status == 0, "\(result.stderr)")
    let html = try String(contentsOfFile: page, encoding: .utf8)
    #expect(html.contains("<section id=\"comparison\" data-paired=\"true\">"))
    let compared = try compareJSON(["--bootstrap", "200", "--a", "checkpoint=a", "--b", "checkpoint=b",
                                    bootstrapScratch.sub("a.json"), bootstrapScratch.sub("b.json")])
    let nll = compared["differences"]!["nll"]!
    #expect(html.contains("data-metric=\"nll\" data-difference=\"\(nll["difference"]!.doubleValue!.description)\" data-lower=\"\(nll["interval"]!.arrayValue![0].doubleValue!.description)\""))
    // Each group's table shows its interval after the value.
    let a = try JSONValue.parse(String(contentsOfFile: bootstrapScratch.sub("a.json"), encoding: .utf8))["groups"]!.arrayValue![0]
    let lower = a["intervals"]!["nll"]!.arrayValue![0].doubleValue!
    #expect(html.contains(String(format: "[%.4f, ", lower)), "the group's NLL interval")
    let unpairedFlags = try runSmoothd(["report", "--compare-a", "checkpoint=a", "-o", page, bootstrapScratch.sub("a.json")])
    #expect(unpairedFlags.status == 64 && unpairedFlags.stderr.contains("--compare-a and --compare-b go together"))
}
