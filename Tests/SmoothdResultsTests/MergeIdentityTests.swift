import Foundation
import SmoothdJSON
import SmoothdMetrics
import SmoothdPipeline
@testable import SmoothdResults
import SmoothdRuns
import SmoothdTesting
import Testing

/// The repository's Fixtures directory.
let fixturesDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Fixtures")

/// Every fixture shard, valid, invalid and runs (in Fixtures/runs/expected.json order), as paths relative to Fixtures/.
let allFixtureFiles: [String] = {
    func names(_ dir: String) -> [String] {
        let list = (try? FileManager.default.contentsOfDirectory(atPath: fixturesDirectory.appendingPathComponent(dir).path)) ?? []
        return list.filter { $0.hasSuffix(".lshd.zst") }.sorted().map { "\(dir)/\($0)" }
    }
    let runs = try! JSONValue.parse(utf8: Data(contentsOf: fixturesDirectory.appendingPathComponent("runs/expected.json")))
    return names("valid") + names("invalid") + runs["files"]!.arrayValue!.map { $0["file"]!.stringValue! }
}()

/// The options the run fixtures' reference uses.
let fixtureOptions = MetricOptions(smoothing: 0.1, mode: .uniform, reportSmoothing: [0], topK: 5, eceBins: 15)

/// Each fixture evaluated once by eval's own pipeline (the reference for every merge here).
let fixtureOutcomes: [String: ShardOutcome] = {
    let evaluator = ShardEvaluator(options: EvaluationOptions(metrics: fixtureOptions, threads: 2))
    var outcomes: [String: ShardOutcome] = [:]
    for file in allFixtureFiles {
        var outcome = evaluator.evaluate(path: fixturesDirectory.appendingPathComponent(file).path)
        // Name shards as eval does when run in Fixtures/ (the identity by name is the last component).
        switch outcome {
        case .success(var s): s.shard = file; outcome = .success(s)
        case .failure(var f): f.shard = file; outcome = .failure(f)
        }
        outcomes[file] = outcome
    }
    return outcomes
}()

/// A scratch directory, removed when the value is dropped.
final class ScratchDirectory {
    let path: String
    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("smoothd-results-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func write(_ name: String, _ text: String) throws -> String {
        let file = path + "/" + name
        try Data(text.utf8).write(to: URL(fileURLWithPath: file))
        return file
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// `eval --json` of `files` (in that order), as `smoothd eval` prints it.
func evalDocument(_ files: [String], groupBy: GroupBy, options: MetricOptions = fixtureOptions) -> (report: EvalReport, text: String) {
    let report = EvalReport(files.map { fixtureOutcomes[$0]! }, groupBy: groupBy, options: options)
    return (report, report.json.serialized(pretty: true))
}

/// `files` shuffled with a seeded SplitMix and cut into `parts` non-empty slices.
func shuffledParts(_ files: [String], parts: Int, seed: UInt64) -> [[String]] {
    var generator = SplitMix(seed: seed)
    let shuffled = files.shuffled(using: &generator)
    var cuts = Set<Int>()
    while cuts.count < parts - 1 { cuts.insert(1 + Int(generator.next() % UInt64(shuffled.count - 1))) }
    let bounds = [0] + cuts.sorted() + [shuffled.count]
    return (0..<parts).map { Array(shuffled[bounds[$0]..<bounds[$0 + 1]]) }
}

struct SplitCase: CustomTestStringConvertible, Sendable {
    let parts: Int
    let seed: UInt64
    let groupBy: String
    var testDescription: String { "\(parts) parts, seed \(seed), --group-by \(groupBy)" }
}

let splitCases: [SplitCase] = [2, 3, 7].flatMap { parts in
    [(UInt64(11), "model,checkpoint,split"), (UInt64(29), "model"), (UInt64(47), "none")].map { SplitCase(parts: parts, seed: $0.0, groupBy: $0.1) }
}

/// Merging eval --json outputs of the fixtures cut into 2, 3 and 7 shuffled parts gives groups and a total
/// bit-identical (states included) to one eval over all the shards in the same order: the re-runs in the
/// set supersede by input order exactly as eval's command line does.
@Test(arguments: splitCases)
func mergeOfEvalPartsEqualsOneEval(_ split: SplitCase) throws {
    let scratch = try ScratchDirectory()
    let groupBy = try GroupBy(parsing: split.groupBy)
    let parts = shuffledParts(allFixtureFiles, parts: split.parts, seed: split.seed)
    var paths: [String] = []
    for (i, part) in parts.enumerated() { paths.append(try scratch.write("part-\(i).json", evalDocument(part, groupBy: groupBy).text)) }
    let merged = MergeReport(paths: paths, options: MergeOptions(metrics: fixtureOptions, groupBy: groupBy))
    let reference = evalDocument(parts.flatMap { $0 }, groupBy: groupBy).report

    #expect(!merged.hasErrors, "\(merged.errors)")
    #expect(merged.groups.count == reference.groups.count)
    #expect(merged.groups.count > 1 || split.groupBy == "none")
    #expect(JSONValue.array(merged.groups.map(\.json)) == JSONValue.array(reference.groups.map(\.json)))
    #expect(merged.total.json == reference.total.json)
    #expect(merged.total.shardsFailed == reference.total.shardsFailed && merged.total.shardsFailed > 0)
    #expect(merged.supersessions.count == reference.supersessions.count, "\(merged.supersessions)")
    #expect(merged.inputs.map(\.kind) == Array(repeating: .eval, count: split.parts))
    #expect(merged.inputs.map { $0.shardsOK + $0.shardsFailed } == parts.map(\.count))
}

/// The accumulator eval computed for `file`.
func fixtureState(_ file: String) -> MetricAccumulator {
    guard case .success(let summary) = fixtureOutcomes[file]! else { preconditionFailure("\(file) is valid") }
    return summary.accumulator
}

/// One shard recorded three times: the latest `processed_at` wins when every record has one, whatever the
/// input order; with a record lacking it, the last in input order wins. The expected state is the winning
/// record's own (eval's), and each dropped record is one supersession.
@Test func theNewestRecordOfAShardIsCounted() throws {
    let states = ["valid/k2.lshd.zst", "valid/confident.lshd.zst", "valid/worked_example.lshd.zst"].map(fixtureState)
    func input(_ name: String, _ state: MetricAccumulator, _ time: String?) -> ResultInput {
        ResultInput(path: name, kind: .summary, records: [ResultRecord(shard: "same.lshd.zst", file: name, meta: nil, metaOmitted: false, processedAt: time, outcome: .valid(state))],
                    errors: [])
    }
    let options = MergeOptions(metrics: fixtureOptions)
    let timed = MergeReport([input("a", states[0], "2026-12-01T10:00:02.000Z"), input("b", states[1], "2026-12-01T10:00:01.000Z"),
                             input("c", states[2], "2026-12-01T10:00:00.500Z")], options: options)
    #expect(timed.total.state == states[0], "the latest processed_at, though first in input order")
    #expect(timed.supersessions.map(\.dropped) == ["b", "c"] && timed.supersessions.allSatisfy { $0.kept == "a" })
    #expect(timed.total.shardsOK == 1)
    let tie = MergeReport([input("a", states[0], "2026-12-01T10:00:00.000Z"), input("b", states[1], "2026-12-01T10:00:00.000Z")], options: options)
    #expect(tie.total.state == states[1], "equal times: the later input")
    let untimed = MergeReport([input("a", states[0], "2026-12-01T10:00:02.000Z"), input("b", states[1], nil),
                               input("c", states[2], "2026-12-01T10:00:00.500Z")], options: options)
    #expect(untimed.total.state == states[2], "a record without processed_at: the last in input order")
    #expect(untimed.warnings.filter { $0.contains("supersedes") }.count == 2)
}

/// Version-1 states (written before `state_version` existed, or with `state_version` 1: the version-1 members only)
/// read and merge like the current one, their confidence histogram unknown: adaptive ECE is then null for anything
/// merged from one. An unknown version is refused naming the member.
@Test func versionOneStatesStillRead() throws {
    let state = fixtureState("valid/k2.lshd.zst")
    let written = state.jsonState()
    #expect(written.objectMembers?.first?.0 == "state_version" && written["state_version"] == .int(2))
    let versionOneMembers = written.objectMembers!.filter { !["state_version", "temperatures", "confidence_histogram"].contains($0.0) }
    var expected = state
    expected.confidenceHistogram = nil
    for old in [JSONValue.object(versionOneMembers), .object([("state_version", .int(1))] + versionOneMembers)] {
        let read = try MetricAccumulator(jsonState: old)
        #expect(read == expected)
        #expect(read.inconsistencies.isEmpty)
        var merged = state
        merged.merge(read)
        #expect(merged.confidenceHistogram == nil)
        #expect(MetricValues(merged, options: MetricOptions()).adaptiveECE == nil)
        #expect(MetricValues(merged, options: MetricOptions()).ece != nil)
    }
    #expect(MetricValues(state, options: MetricOptions()).adaptiveECE != nil)
    let future = JSONValue.object(written.objectMembers!.map { $0.0 == "state_version" ? ($0.0, .int(3)) : $0 })
    #expect(throws: MetricStateError.self) { try MetricAccumulator(jsonState: future) }
    do {
        _ = try MetricAccumulator(jsonState: future)
    } catch {
        #expect(error.description.hasPrefix("state_version: unknown state_version 3"))
    }
}
