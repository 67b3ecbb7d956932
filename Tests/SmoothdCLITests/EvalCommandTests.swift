import Foundation
import SmoothdJSON
import Testing

let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// The `smoothd` binary built next to this test bundle.
let smoothdBinary: URL = {
    let bundleDirectory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for candidate in [bundleDirectory, bundleDirectory.deletingLastPathComponent()] {
        let url = candidate.appendingPathComponent("smoothd")
        if FileManager.default.isExecutableFile(atPath: url.path) { return url }
    }
    return repository.appendingPathComponent(".build/debug/smoothd")
}()

struct ProcessResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// The repository's Fixtures directory.
let fixturesDirectory = repository.appendingPathComponent("Fixtures")

/// Runs the binary with `arguments` in `directory` (the repository unless given).
func runSmoothd(_ arguments: [String], in directory: URL = repository) throws -> ProcessResult {
    let process = Process()
    process.executableURL = smoothdBinary
    process.arguments = arguments
    process.currentDirectoryURL = directory
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return ProcessResult(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                         stderr: String(decoding: errData, as: UTF8.self))
}

@Test func jsonDocumentHasShardsAndTotal() throws {
    let result = try runSmoothd(["eval", "--json", "--report-smoothing", "0,0.3", "Fixtures/valid/k2.lshd.zst", "Fixtures/valid/all_ignored.lshd.zst"])
    #expect(result.status == 0, "\(result.stderr)")
    let document = try JSONValue.parse(result.stdout)
    let shards = try #require(document["shards"]?.arrayValue)
    #expect(shards.count == 2)
    let k2 = shards[0]
    #expect(k2["shard"] == .string("Fixtures/valid/k2.lshd.zst"))
    #expect(k2["ok"] == .bool(true))
    #expect(k2["smoothing_mode"] == .string("uniform"))
    #expect(k2["losses_by_smoothing"]?.objectMembers?.map(\.0) == ["0.1", "0.0", "0.3"])
    for key in ["num_classes", "logit_dtype", "smoothing", "top_k", "rows", "counted_rows", "ignored_rows", "nonfinite_rows", "loss",
                "nll", "perplexity", "accuracy", "top_k_accuracy", "mean_confidence", "entropy", "brier", "ece", "meta"] {
        #expect(k2[key] != nil, "missing \(key)")
    }
    #expect(shards[1]["loss"] == .null, "no counted rows gives null metrics")
    let total = try #require(document["total"])
    #expect(total["shards_ok"] == .int(2))
    #expect(total["rows"] == .int(210))
    #expect(total["counted_rows"] == k2["counted_rows"])
    #expect(total["loss"] == k2["loss"], "the ignored-only shard adds nothing")
}

@Test func invalidShardsExitOneAndStillReportTheValidOnes() throws {
    let result = try runSmoothd(["eval", "--json", "Fixtures/valid/k2.lshd.zst", "Fixtures/invalid/label_out_of_range_eq_k.lshd.zst",
                                 "Fixtures/does-not-exist.lshd.zst"])
    #expect(result.status == 1)
    let shards = try #require(try JSONValue.parse(result.stdout)["shards"]?.arrayValue)
    #expect(shards[0]["ok"] == .bool(true))
    #expect(shards[1]["ok"] == .bool(false))
    #expect(shards[1]["error"]?["kind"] == .string("label_out_of_range"))
    #expect(shards[1]["error"]?["offset"] == .int(60))
    #expect(shards[1]["error"]?["reason"]?.stringValue?.contains("out of range [0, ") == true)
    #expect(shards[1]["nll"] == nil, "a bad shard has no metrics")
    #expect(shards[2]["error"]?["kind"] == .string("io_error"))
}

@Test func tableNamesTheErrorWithFileOffsetAndReason() throws {
    let result = try runSmoothd(["eval", "Fixtures/valid/worked_example.lshd.zst", "Fixtures/invalid/truncated_mid_logits.lshd.zst"])
    #expect(result.status == 1)
    #expect(result.stdout.contains("0.361773"))
    #expect(result.stdout.contains("Fixtures/invalid/truncated_mid_logits.lshd.zst: invalid: payload ends inside the logits"))
    #expect(result.stdout.contains("at offset 142"))
}

@Test(arguments: [["eval"], ["eval", "--top-k", "0", "x"], ["eval", "--smoothing", "2", "x"], ["eval", "--smoothing-mode", "fair", "x"], ["eval", "--group-by", "", "x"],
                  ["eval", "--memory-budget", "lots", "x"], ["frobnicate"]])
func usageErrorsExit64(_ arguments: [String]) throws {
    let result = try runSmoothd(arguments)
    #expect(result.status == 64, "\(arguments): \(result.stderr)")
}
