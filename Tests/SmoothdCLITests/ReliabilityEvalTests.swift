import Foundation
import SmoothdJSON
import SmoothdTesting
import Testing

/// Fixtures/expected.json's valid entries by file, written by the NumPy reference (Fixtures/make_fixtures.py).
let fixtureExpected: [String: JSONValue] = {
    let data = try! Data(contentsOf: fixturesDirectory.appendingPathComponent("expected.json"))
    let document = try! JSONValue.parse(utf8: data)
    return Dictionary(uniqueKeysWithValues: document["valid"]!.arrayValue!.map { ($0["file"]!.stringValue!, $0) })
}()

/// The reference's bins of several shards pooled: counts added, accuracy and mean confidence weighted by count.
func pooledBins(_ files: [String], bins: Int) -> [(count: Int64, accuracy: Double?, confidence: Double?)] {
    (0..<bins).map { b in
        var count: Int64 = 0, correct = 0.0, confidence = 0.0
        for file in files {
            let bin = fixtureExpected[file]!["reliability"]![String(bins)]!.arrayValue![b]
            let n = bin["count"]!.intValue!
            guard n > 0 else { continue }
            count += n
            correct += bin["accuracy"]!.doubleValue! * Double(n)
            confidence += bin["mean_confidence"]!.doubleValue! * Double(n)
        }
        return count == 0 ? (0, nil, nil) : (count, correct / Double(count), confidence / Double(count))
    }
}

/// `eval --json` prints `mce` and `reliability` in shard entries, the group and the total, each matching the
/// NumPy reference (the group and total against the reference's per-shard bins pooled).
@Test func evalJSONHasReliabilityBinsAndMCE() throws {
    let files = ["valid/k2.lshd.zst", "valid/f16_ignore0.lshd.zst", "valid/num_rows_stated.lshd.zst", "valid/all_ignored.lshd.zst"]
    let result = try runSmoothd(["eval", "--json", "--ece-bins", "10", "--group-by", "none"] + files.map { "Fixtures/" + $0 })
    #expect(result.status == 0, "\(result.stderr)")
    let document = try JSONValue.parse(result.stdout)
    let shards = try #require(document["shards"]?.arrayValue)
    for (file, shard) in zip(files, shards) {
        let expected = fixtureExpected[file]!
        #expect(close(shard["mce"], expected["mce"]?["10"], relative: 1e-4, absolute: 1e-4), "\(file) mce")
        #expect(shard["reliability"]?.arrayValue?.map { $0["count"] } == expected["reliability"]?["10"]?.arrayValue?.map { $0["count"] },
                "\(file) bin counts")
    }
    let pooled = pooledBins(files, bins: 10)
    let gaps = pooled.compactMap { bin in bin.accuracy.map { abs($0 - bin.confidence!) } }
    let group = try #require(document["groups"]?.arrayValue?.first)
    for (name, report) in [("total", try #require(document["total"])), ("group", group)] {
        let bins = try #require(report["reliability"]?.arrayValue, "\(name) has no reliability")
        #expect(bins.count == 10)
        for (b, (got, want)) in zip(bins, pooled).enumerated() {
            #expect(got["lower"]?.doubleValue == Double(b) / 10 && got["upper"]?.doubleValue == Double(b + 1) / 10, "\(name) bin \(b) edges")
            #expect(got["count"]?.intValue == want.count, "\(name) bin \(b) count")
            #expect(close(got["accuracy"], want.accuracy.map(JSONValue.double) ?? .null, relative: 1e-9), "\(name) bin \(b) accuracy")
            #expect(close(got["mean_confidence"], want.confidence.map(JSONValue.double) ?? .null, relative: 1e-6), "\(name) bin \(b) confidence")
        }
        #expect(close(report["mce"], .double(gaps.max()!), relative: 1e-4, absolute: 1e-4), "\(name) mce")
    }
}

/// A shard with no counted row has null `mce` and every bin empty, with null accuracy and mean confidence.
@Test func emptyShardHasNullMCEAndEmptyBins() throws {
    let result = try runSmoothd(["eval", "--json", "Fixtures/valid/all_ignored.lshd.zst"])
    let shard = try #require(try JSONValue.parse(result.stdout)["shards"]?.arrayValue?.first)
    #expect(shard["mce"] == .null)
    let bins = try #require(shard["reliability"]?.arrayValue)
    #expect(bins.count == 15)
    #expect(bins.allSatisfy { $0["count"] == .int(0) && $0["accuracy"] == .null && $0["mean_confidence"] == .null })
}
