import Foundation
import SmoothdJSON
import SmoothdTesting
import Testing

// Issue 14 through the command line: --temperatures in eval, merge and serve (per-group totals), the refusal to
// merge states of another sweep, and the values against the NumPy reference (Fixtures/stats/expected.json).

let checkpointFiles = ["stats/ckpt_a_0.lshd.zst", "stats/ckpt_a_1.lshd.zst", "stats/ckpt_a_2.lshd.zst"]

/// Bad temperatures are usage errors naming the value.
@Test(arguments: ["0", "-1", "nan", "abc", "0.5,,2", "inf"])
func badTemperaturesAreRefused(_ value: String) throws {
    let result = try runSmoothd(["eval", "--temperatures=" + value, "Fixtures/stats/temp_k10.lshd.zst"])
    #expect(result.status == 64, "\(result.stderr)")
    #expect(result.stderr.contains("invalid --temperatures value"), "\(result.stderr)")
}

/// eval --json: every shard entry, group and the total carry `adaptive_ece`, `by_temperature` (keys in the given
/// order, repeats dropped) and `best_temperature`, matching the reference's pool; the table has adaptive ECE.
@Test func evalReportsTheSweepEverywhere() throws {
    let flags = StatsFixtures.flags("uniform_b15")
    let doc = try evalJSON(checkpointFiles, extra: flags + ["--temperatures", "0.5,0.75,1.0,1.5,2.0,3.0,1.0"])
    let wanted = StatsFixtures.expected["pools"]!["ckpt_a"]!["results"]!["uniform_b15"]!
    let keys = wanted["by_temperature"]!.objectMembers!.map(\.0)
    let places = (doc["shards"]!.arrayValue! + doc["groups"]!.arrayValue!) + [doc["total"]!]
    for place in places {
        #expect(place["by_temperature"]?.objectMembers?.map(\.0) == keys, "\(place["shard"] ?? place["key"] ?? .null)")
        #expect(place["best_temperature"]?["temperature"]?.doubleValue != nil)
        #expect(place["adaptive_ece"]?.doubleValue != nil)
    }
    let total = doc["total"]!
    for (key, values) in wanted["by_temperature"]!.objectMembers! {
        #expect(close(total["by_temperature"]?[key]?["nll"], values["nll"], relative: 1e-6), "T=\(key)")
        #expect(close(total["by_temperature"]?[key]?["ece"], values["ece"], relative: 0, absolute: 1e-4), "T=\(key)")
    }
    #expect(close(total["best_temperature"]?["temperature"], wanted["best_temperature"]!["temperature"], relative: 0, absolute: 1e-3))
    #expect(total["temperatures"]?.arrayValue?.count == 6)

    let plain = try evalJSON(["stats/temp_k10.lshd.zst"])
    #expect(plain["total"]?["by_temperature"] == nil && plain["total"]?["best_temperature"] == nil)
    #expect(plain["total"]?["adaptive_ece"]?.doubleValue != nil)
    let table = try runSmoothd(["eval", "Fixtures/stats/temp_k10.lshd.zst"])
    #expect(table.stdout.contains("aECE"), "\(table.stdout)")
}

/// Merging split states gives the whole (sweep and histogram included, bit for bit); states of another
/// temperature list are refused, naming the flags that merge them.
@Test func mergeCombinesSweepsAndRefusesOtherLists() throws {
    let scratch = try MergeScratch()
    let flags = StatsFixtures.flags("others_b10")
    let whole = try evalJSON(checkpointFiles, extra: flags)
    let first = try scratch.write("first.json", try evalJSON(Array(checkpointFiles.prefix(1)), extra: flags).serialized())
    let rest = try scratch.write("rest.json", try evalJSON(Array(checkpointFiles.dropFirst()), extra: flags).serialized())
    let merged = try mergeJSON([first, rest], extra: flags)
    #expect(merged.status == 0, "\(merged.stderr)")
    #expect(merged.document["total"] == whole["total"])
    #expect(merged.document["groups"] == whole["groups"])

    let refused = try mergeJSON([first, rest], extra: Array(flags.dropLast(2)))
    #expect(refused.status == 1)
    #expect(refused.stderr.contains("state computed with top-k 5 and 10 ECE bins, temperatures 0.5,0.75,1.0,1.5,2.0,3.0; this merge uses top-k 5 and 10 ECE bins, no temperatures"), "\(refused.stderr)")
    #expect(refused.stderr.contains("merge them with --top-k 5 --ece-bins 10 --temperatures 0.5,0.75,1.0,1.5,2.0,3.0"), "\(refused.stderr)")
    let otherList = try mergeJSON([first], extra: Array(flags.dropLast(2)) + ["--temperatures", "0.5,2"])
    #expect(otherList.status == 1)
    #expect(otherList.stderr.contains("this merge uses top-k 5 and 10 ECE bins, temperatures 0.5,2.0"), "\(otherList.stderr)")
}

/// serve with --temperatures: each summary's entry and totals.json's groups and total carry the sweep, exactly as
/// eval --json gives them, and a restart rebuilds the same totals from the summaries' states.
@Test func serveTotalsCarryTheSweepPerGroup() throws {
    let scratch = try MergeScratch()
    let spool = scratch.sub("spool"), output = scratch.sub("out")
    let fm = FileManager.default
    try fm.createDirectory(atPath: spool, withIntermediateDirectories: true)
    let files = checkpointFiles + ["stats/temp_k10.lshd.zst"]
    for file in files {
        let name = (file as NSString).lastPathComponent
        try fm.copyItem(atPath: StatsFixtures.path(file), toPath: spool + "/.\(name).tmp")
        try fm.moveItem(atPath: spool + "/.\(name).tmp", toPath: spool + "/" + name)
    }
    let flags = StatsFixtures.flags("uniform_b15")
    let serve = ["serve", "--spool", spool, "--output", output, "--metrics-listen", "none", "--exit-when-idle"] + flags
    let result = try runSmoothd(serve)
    #expect(result.status == 0, "\(result.stderr)")
    let totalsBytes = try Data(contentsOf: URL(fileURLWithPath: output + "/totals.json"))
    let totals = try JSONValue.parse(utf8: totalsBytes)
    let eval = try evalJSON(files, extra: flags)
    let groups = try #require(totals["groups"]?.arrayValue)
    #expect(!groups.isEmpty)
    #expect(groups.map { $0.serialized() } == eval["groups"]!.arrayValue!.map { $0.serialized() })
    for group in groups { #expect(group["by_temperature"]?.objectMembers?.count == 6 && group["best_temperature"] != nil) }
    let summary = try JSONValue.parse(utf8: Data(contentsOf: URL(fileURLWithPath: output + "/ckpt_a_0.lshd.zst.summary.json")))
    #expect(summary["by_temperature"] == eval["shards"]!.arrayValue![0]["by_temperature"])
    #expect(summary["state"]?["state_version"] == .int(2))
    let again = try runSmoothd(serve)
    #expect(again.status == 0, "\(again.stderr)")
    #expect(try Data(contentsOf: URL(fileURLWithPath: output + "/totals.json")) == totalsBytes)
}

/// smoothd report --temperatures: each group's and the total's section has a temperature table (one row per T and
/// the best T) and adaptive ECE next to ECE.
@Test func reportShowsTemperatureTablesAndAdaptiveECE() throws {
    let scratch = try MergeScratch()
    let page = scratch.sub("report.html")
    let result = try runSmoothd(["report", "--output", page] + StatsFixtures.flags("uniform_b15") + checkpointFiles.map { StatsFixtures.path($0) })
    #expect(result.status == 0, "\(result.stderr)")
    let html = try String(contentsOfFile: page, encoding: .utf8)
    // One group (one checkpoint): its section, and no separate total section.
    #expect(html.contains("<table class=\"temperatures\" id=\"group-0-temperatures\">"), "\(html.prefix(2000))")
    for key in ["0.5", "0.75", "1.0", "1.5", "2.0", "3.0"] { #expect(html.contains("<tr><th>\(key)</th>"), "row \(key)") }
    #expect(html.contains("best T = "))
    #expect(html.contains("<th>adaptive ECE</th>"))
    let plain = try runSmoothd(["report", "--output", page, StatsFixtures.path("stats/temp_k10.lshd.zst")])
    #expect(plain.status == 0, "\(plain.stderr)")
    let plainHTML = try String(contentsOfFile: page, encoding: .utf8)
    #expect(!plainHTML.contains("class=\"temperatures\"") && plainHTML.contains("<th>adaptive ECE</th>"))
}
