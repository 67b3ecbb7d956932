import Foundation
import SmoothdJSON
import SmoothdTesting
import Testing

// `smoothd merge` as deployed: real eval --json outputs and real serve output directories, and one
// `smoothd eval` over the same shards as the expected value (eval itself is checked against the NumPy
// reference in RunsEvalTests and FixtureTests).

/// Every fixture shard (relative to Fixtures/): the run set in its reference order, then valid and invalid.
let mergeFixtureFiles: [String] = {
    func names(_ dir: String) -> [String] {
        let list = (try? FileManager.default.contentsOfDirectory(atPath: fixturesDirectory.appendingPathComponent(dir).path)) ?? []
        return list.filter { $0.hasSuffix(".lshd.zst") }.sorted().map { "\(dir)/\($0)" }
    }
    return runFiles + names("valid") + names("invalid")
}()

/// The run set's re-runs: (superseded file, the file that supersedes it).
let rerunPairs: [(original: String, rerun: String)] = runsExpected["group_by"]!["model,checkpoint,split"]!["superseded"]!.arrayValue!.map {
    ($0["superseded"]!.stringValue!, $0["by"]!.stringValue!)
}

/// A scratch directory, removed with the value.
final class MergeScratch: @unchecked Sendable {
    // `@unchecked Sendable`: `path` is immutable; the directory is only written by the test that made it.
    let path: String
    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("smoothd-merge-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func sub(_ name: String) -> String { path + "/" + name }
    @discardableResult
    func write(_ name: String, _ text: String) throws -> String {
        try Data(text.utf8).write(to: URL(fileURLWithPath: sub(name)))
        return sub(name)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// `serve --exit-when-idle` over a fresh spool holding `files` (copied under their base names) into `output`.
func serveOnce(_ files: [String], spool: String, output: String) throws {
    let fm = FileManager.default
    try fm.createDirectory(atPath: spool, withIntermediateDirectories: true)
    for file in files {
        let name = (file as NSString).lastPathComponent
        try fm.copyItem(atPath: fixturesDirectory.appendingPathComponent(file).path, toPath: spool + "/.\(name).tmp")
        try fm.moveItem(atPath: spool + "/.\(name).tmp", toPath: spool + "/" + name)
    }
    let result = try runSmoothd(["serve", "--spool", spool, "--output", output, "--metrics-listen", "none", "--exit-when-idle"])
    #expect(result.status == 0, "serve: \(result.stderr)")
}

/// `eval --json` of `files` in Fixtures/ (exit status 0 or 1), parsed.
func evalJSON(_ files: [String], extra: [String] = []) throws -> JSONValue {
    let result = try runSmoothd(["eval", "--json"] + extra + files, in: fixturesDirectory)
    #expect(result.status == 0 || result.status == 1, "eval: \(result.stderr)")
    return try JSONValue.parse(result.stdout)
}

/// `merge --json INPUTS`, parsed, with its exit status and stderr.
func mergeJSON(_ inputs: [String], extra: [String] = []) throws -> (status: Int32, document: JSONValue, stderr: String) {
    let result = try runSmoothd(["merge", "--json"] + extra + inputs)
    return (result.status, try JSONValue.parse(result.stdout), result.stderr)
}

/// The run set's groups and total, bit for bit (states included; groups and totals have no timing field).
func expectSameGroupsAndTotal(_ merged: JSONValue, _ evaluated: JSONValue, _ context: String, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(merged["groups"] == evaluated["groups"], "\(context): groups differ", sourceLocation: sourceLocation)
    #expect(merged["total"] == evaluated["total"], "\(context): total differs\n\(merged["total"]?.serialized() ?? "")\n\(evaluated["total"]?.serialized() ?? "")",
            sourceLocation: sourceLocation)
    #expect((merged["groups"]?.arrayValue?.count ?? 0) > 1, "\(context): the set has several groups", sourceLocation: sourceLocation)
}

/// The fixtures processed by serve, as a deployment would: every shard but the re-runs first, then the
/// re-runs (later `processed_at`; `rerun/plain-0` reuses a name and is recorded as `plain-0.lshd.zst~2`).
let servedFixtures: (scratch: MergeScratch, output: String) = {
    let scratch = try! MergeScratch()
    let reruns = Set(rerunPairs.map(\.rerun))
    try! serveOnce(mergeFixtureFiles.filter { !reruns.contains($0) }, spool: scratch.sub("spool"), output: scratch.sub("out"))
    try! serveOnce(mergeFixtureFiles.filter { reruns.contains($0) }, spool: scratch.sub("spool"), output: scratch.sub("out"))
    return (scratch, scratch.sub("out"))
}()

/// The record file serve wrote for `file` (the summary or error record at the top of its output), if it is still there.
func servedRecord(_ file: String) -> String? {
    var name = (file as NSString).lastPathComponent
    if file.hasPrefix("runs/rerun/") { name += "~2" }
    for suffix in [".summary.json", ".error.json"] where FileManager.default.fileExists(atPath: servedFixtures.output + "/" + name + suffix) {
        return servedFixtures.output + "/" + name + suffix
    }
    return nil
}

/// Two daemons on two spools into two output directories, then one merge over both: the groups and the
/// total equal one eval over all the shards (the re-runs, processed by the second daemon, supersede).
@Test func twoDaemonsThenOneMergeEqualOneEval() throws {
    let scratch = try MergeScratch()
    let reruns = Set(rerunPairs.map(\.rerun))
    let originals = Set(rerunPairs.map(\.original))
    let first = mergeFixtureFiles.enumerated().filter { ($0.offset % 2 == 0 || originals.contains($0.element)) && !reruns.contains($0.element) }.map(\.element)
    let second = mergeFixtureFiles.filter { !first.contains($0) }
    try serveOnce(first, spool: scratch.sub("spool-a"), output: scratch.sub("out-a"))
    try serveOnce(second, spool: scratch.sub("spool-b"), output: scratch.sub("out-b"))
    let merged = try mergeJSON([scratch.sub("out-a"), scratch.sub("out-b")])
    #expect(merged.status == 0, "\(merged.stderr)")
    expectSameGroupsAndTotal(merged.document, try evalJSON(first + second), "two daemons")
    let inputs = try #require(merged.document["inputs"]?.arrayValue)
    #expect(inputs.map { $0["kind"] } == [.string("directory"), .string("directory")])
    #expect(inputs.map { ($0["shards_ok"]?.intValue ?? 0) + ($0["shards_failed"]?.intValue ?? 0) } == [Int64(first.count), Int64(second.count)])
    #expect(merged.stderr.contains("supersedes"), "the re-runs are named: \(merged.stderr)")
}

struct MixedSplit: CustomTestStringConvertible, Sendable {
    let parts: Int
    let seed: UInt64
    var testDescription: String { "\(parts) parts, seed \(seed)" }
}

/// The fixtures cut into 2, 3 and 7 shuffled parts, each part given as an eval --json output, a serve output
/// directory, or its record files one by one (in turn): the merge equals one eval over the shards. Where a
/// re-run and its original both come from serve, the later `processed_at` (the re-run) wins; otherwise the
/// later input does, so eval is given the shards with each pair's winner last.
@Test(arguments: [MixedSplit(parts: 2, seed: 3), MixedSplit(parts: 3, seed: 5), MixedSplit(parts: 7, seed: 8)])
func mergeOfMixedInputsEqualsOneEval(_ split: MixedSplit) throws {
    let scratch = try MergeScratch()
    let available = mergeFixtureFiles.filter { servedRecord($0) != nil }
    var generator = SplitMix(seed: split.seed)
    let shuffled = available.shuffled(using: &generator)
    var cuts = Set<Int>()
    while cuts.count < split.parts - 1 { cuts.insert(1 + Int(generator.next() % UInt64(shuffled.count - 1))) }
    let bounds = [0] + cuts.sorted() + [shuffled.count]
    var inputs: [String] = []
    var order: [(file: String, fromServe: Bool)] = []  // the shards in the order merge reads them
    for p in 0..<split.parts {
        let part = Array(shuffled[bounds[p]..<bounds[p + 1]])
        switch p % 3 {
        case 0:
            let document = try evalJSON(part)
            inputs.append(try scratch.write("part-\(p).json", document.serialized(pretty: true)))
            order += part.map { ($0, false) }
        case 1:
            let dir = scratch.sub("part-\(p)")
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            var byName: [(String, String)] = []
            for file in part {
                let record = servedRecord(file)!
                let name = (record as NSString).lastPathComponent
                try FileManager.default.copyItem(atPath: record, toPath: dir + "/" + name)
                byName.append((name, file))
            }
            inputs.append(dir)
            order += byName.sorted { Array($0.0.utf8).lexicographicallyPrecedes(Array($1.0.utf8)) }.map { ($0.1, true) }
        default:
            inputs += part.map { servedRecord($0)! }
            order += part.map { ($0, true) }
        }
    }
    var evalOrder = order.map(\.file)
    for pair in rerunPairs {
        guard let a = order.firstIndex(where: { $0.file == pair.original }), let b = order.firstIndex(where: { $0.file == pair.rerun }) else { continue }
        let rerunWins = (order[a].fromServe && order[b].fromServe) || b > a
        let loser = rerunWins ? pair.original : pair.rerun
        evalOrder.removeAll { $0 == loser }
        evalOrder.insert(loser, at: 0)
    }
    let merged = try mergeJSON(inputs)
    #expect(merged.status == 0, "\(merged.stderr)")
    expectSameGroupsAndTotal(merged.document, try evalJSON(evalOrder), "\(split)")
}

/// Every kind of bad input is named (file, and the key or byte offset), exits 1, and leaves the good inputs
/// merged: the total is that of one eval over the good input's shards.
@Test func badInputsAreNamedAndTheGoodOnesStillMerged() throws {
    let scratch = try MergeScratch()
    let goodFiles = ["runs/lm-a.ckpt-100.validation.r0.lshd.zst", "runs/lm-a.ckpt-100.validation.r1.lshd.zst", "valid/k2.lshd.zst"]
    let good = try scratch.write("good.json", try evalJSON(goodFiles).serialized(pretty: true))
    let summary = try #require(servedRecord("valid/confident.lshd.zst"))
    let summaryText = try String(contentsOfFile: summary, encoding: .utf8)
    let record = try JSONValue.parse(summaryText)

    /// The summary with `state` member `key` replaced (or added) by `value`.
    func withState(_ key: String, _ value: JSONValue) throws -> String {
        var members = try #require(record["state"]?.objectMembers)
        if let i = members.firstIndex(where: { $0.0 == key }) { members[i].1 = value } else { members.insert((key, value), at: 0) }
        let outer = try #require(record.objectMembers).map { $0.0 == "state" ? ($0.0, JSONValue.object(members)) : $0 }
        return JSONValue.object(outer).serialized(pretty: true)
    }
    let state = try #require(record["state"])
    let rows = try #require(state["rows"]?.intValue), correct = try #require(state["correct"]?.intValue)
    var binCounts = try #require(state["bin_counts"]?.arrayValue)
    binCounts[0] = .int((binCounts[0].intValue ?? 0) + 1)
    let cases: [(name: String, text: String, words: [String])] = [
        ("not-json.summary.json", "this is not JSON\n", ["not JSON", "byte 0"]),
        ("truncated.summary.json", String(summaryText.prefix(summaryText.count / 2)), ["truncated"]),
        ("empty.summary.json", "", ["empty file"]),
        ("version.summary.json", try withState("state_version", .int(3)), ["state.state_version", "unknown state_version 3"]),
        ("rows.summary.json", try withState("rows", .int(rows + 1)), ["state", "do not add up", "rows"]),
        ("bins.summary.json", try withState("bin_counts", .array(binCounts)), ["state", "do not add up", "bin_counts"]),
        ("topk.summary.json", try withState("top_k_hits", .int(correct - 1)), ["state", "do not add up", "top_k_hits"]),
        ("missing.summary.json", try withState("nll_sum", .null), ["state.nll_sum"]),
    ]
    for bad in cases {
        let path = try scratch.write(bad.name, bad.text)
        let merged = try mergeJSON([good, path])
        #expect(merged.status == 1, "\(bad.name) is bad: exit 1")
        for word in [path] + bad.words { #expect(merged.stderr.contains(word), "\(bad.name): stderr names \(word): \(merged.stderr)") }
        let errors = merged.document["inputs"]?.arrayValue?.last?["errors"]?.arrayValue ?? []
        #expect(errors.count == 1 && errors.first?["file"] == .string(path), "\(bad.name): \(errors)")
        #expect(merged.document["total"] == (try evalJSON(goodFiles))["total"], "\(bad.name): the good input is still merged")
    }

    // An eval --json document with one bad entry: that entry is named by its key, the others are merged.
    var document = try evalJSON(goodFiles)
    var shards = try #require(document["shards"]?.arrayValue)
    var members = try #require(shards[1].objectMembers)
    let stateIndex = try #require(members.firstIndex { $0.0 == "state" })
    members[stateIndex].1 = .object(try #require(members[stateIndex].1.objectMembers).map { $0.0 == "counted_rows" ? ($0.0, .int(0)) : $0 })
    shards[1] = .object(members)
    document = .object(try #require(document.objectMembers).map { $0.0 == "shards" ? ($0.0, .array(shards)) : $0 })
    let partly = try scratch.write("partly.json", document.serialized())
    let merged = try mergeJSON([partly])
    #expect(merged.status == 1)
    #expect(merged.stderr.contains("\(partly): shards[1].state: the counts do not add up"), "\(merged.stderr)")
    #expect(merged.document["total"] == (try evalJSON([goodFiles[0], goodFiles[2]]))["total"])

    // A directory with one bad record among good ones.
    let dir = scratch.sub("out")
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    try FileManager.default.copyItem(atPath: summary, toPath: dir + "/" + (summary as NSString).lastPathComponent)
    try Data(summaryText.prefix(100).utf8).write(to: URL(fileURLWithPath: dir + "/cut.lshd.zst.summary.json"))
    let inDirectory = try mergeJSON([dir])
    #expect(inDirectory.status == 1)
    #expect(inDirectory.stderr.contains(dir + "/cut.lshd.zst.summary.json: byte 100: not JSON"), "\(inDirectory.stderr)")
    #expect(inDirectory.document["total"] == (try evalJSON(["valid/confident.lshd.zst"]))["total"])
}

/// States of another top-k or bin count are refused, saying which settings they have and what to pass.
@Test(arguments: [(["--top-k", "3"], "top-k 3 and 15 ECE bins"), (["--ece-bins", "10"], "top-k 5 and 10 ECE bins")])
func statesOfOtherSettingsAreRefused(_ flags: [String], _ words: String) throws {
    let scratch = try MergeScratch()
    let goodFiles = ["valid/k2.lshd.zst"]
    let good = try scratch.write("good.json", try evalJSON(goodFiles).serialized())
    let other = try scratch.write("other.json", try evalJSON(["valid/confident.lshd.zst", "valid/worked_example.lshd.zst"], extra: flags).serialized())
    let merged = try mergeJSON([good, other])
    #expect(merged.status == 1)
    #expect(merged.stderr.contains("\(other): shards[0].state: state computed with \(words) (and 1 more record of this input)"), "\(merged.stderr)")
    #expect(merged.stderr.contains("merge them with " + flags.joined(separator: " ")) || flags[0] == "--ece-bins", "\(merged.stderr)")
    #expect(merged.document["total"] == (try evalJSON(goodFiles))["total"])
    // With the states' own settings they merge.
    let matching = try mergeJSON([other], extra: flags)
    #expect(matching.status == 0, "\(matching.stderr)")
    #expect(matching.document["total"] == (try evalJSON(["valid/confident.lshd.zst", "valid/worked_example.lshd.zst"], extra: flags))["total"])
}

/// A shard seen twice (the same eval output given twice, or the same serve directory twice) is counted
/// once, with a warning naming both records.
@Test func aShardSeenTwiceIsCountedOnceWithAWarning() throws {
    let scratch = try MergeScratch()
    let files = ["valid/k2.lshd.zst", "runs/lm-a.ckpt-100.validation.r0.lshd.zst"]
    let expected = try evalJSON(files)
    let doc = try scratch.write("a.json", expected.serialized())
    let twice = try mergeJSON([doc, doc])
    #expect(twice.status == 0)
    #expect(twice.document["total"] == expected["total"])
    #expect(twice.stderr.components(separatedBy: "supersedes").count - 1 == 2, "\(twice.stderr)")
    #expect(twice.stderr.contains("\(doc) (shards[0], valid/k2.lshd.zst) supersedes \(doc) (shards[0], valid/k2.lshd.zst) (the same shard: file name k2.lshd.zst)"),
            "\(twice.stderr)")

    let dir = scratch.sub("out")
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    for file in files { try FileManager.default.copyItem(atPath: servedRecord(file)!, toPath: dir + "/" + (servedRecord(file)! as NSString).lastPathComponent) }
    let dirs = try mergeJSON([dir, dir, doc])
    #expect(dirs.status == 0)
    #expect(dirs.document["total"] == expected["total"])
    #expect(dirs.stderr.components(separatedBy: "supersedes").count - 1 == 4, "\(dirs.stderr)")
}

/// The table names every input and the total; --threads is refused (merge reads no shards).
@Test func tableAndUsage() throws {
    let scratch = try MergeScratch()
    let doc = try scratch.write("a.json", try evalJSON(["valid/k2.lshd.zst", "invalid/bad_magic.lshd.zst"]).serialized())
    let table = try runSmoothd(["merge", doc])
    #expect(table.status == 0, "invalid shards do not fail a merge: \(table.stderr)")
    #expect(table.stdout.contains("input \(doc) (eval): 1 ok, 1 invalid"), "\(table.stdout)")
    #expect(table.stdout.contains("total (1 ok, 1 invalid)"), "\(table.stdout)")
    #expect(table.stdout.contains("(shards[1], invalid/bad_magic.lshd.zst): invalid: bad_magic"), "\(table.stdout)")
    let usage = try runSmoothd(["merge", "--threads", "2", doc])
    #expect(usage.status == 64)
    #expect(usage.stderr.contains("merge reads no shards"))
    #expect(try runSmoothd(["merge"]).status == 64)
}

/// A serve output directory contributes its top-level summaries and error records only: not `superseded/` (or
/// any subdirectory), `totals.json`, hidden files, or symlinks (serve writes none).
@Test func aDirectoryIsReadAsServeLaysItOut() throws {
    let scratch = try MergeScratch()
    let dir = scratch.sub("out")
    let fm = FileManager.default
    try fm.createDirectory(atPath: dir + "/superseded", withIntermediateDirectories: true)
    let counted = ["valid/k2.lshd.zst", "invalid/bad_magic.lshd.zst"]
    for file in counted { try fm.copyItem(atPath: servedRecord(file)!, toPath: dir + "/" + (servedRecord(file)! as NSString).lastPathComponent) }
    let other = servedRecord("valid/confident.lshd.zst")!
    try fm.copyItem(atPath: other, toPath: dir + "/superseded/confident.lshd.zst.summary.json")
    try fm.copyItem(atPath: other, toPath: dir + "/.confident.lshd.zst.summary.json")
    try fm.createSymbolicLink(atPath: dir + "/linked.lshd.zst.summary.json", withDestinationPath: other)
    try Data("not JSON".utf8).write(to: URL(fileURLWithPath: dir + "/totals.json"))
    let merged = try mergeJSON([dir])
    #expect(merged.status == 0, "\(merged.stderr)")
    #expect(merged.document["total"] == (try evalJSON(counted))["total"])
    #expect(merged.document["inputs"]?.arrayValue?.first?["shards_failed"] == .int(1))
}
