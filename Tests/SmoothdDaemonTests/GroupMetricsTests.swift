import Foundation
import SmoothdJSON
import Testing

@testable import SmoothdDaemon

/// One sample of the Prometheus text format: its name, its labels (unescaped) and its value.
struct PrometheusSample: Equatable {
    var name: String
    var labels: [String: String]
    var value: Double

    /// Parses the sample lines of `text` (comments skipped). Label values are unescaped as the format says
    /// (`\\`, `\"`, `\n`); a line that does not parse is a test failure.
    static func parse(_ text: String) -> [PrometheusSample] {
        var samples: [PrometheusSample] = []
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            var rest = Substring(line)
            let name = String(rest.prefix { $0 != "{" && $0 != " " })
            rest = rest.dropFirst(name.count)
            var labels: [String: String] = [:]
            if rest.first == "{" {
                rest = rest.dropFirst()
                while rest.first != "}" {
                    let key = String(rest.prefix { $0 != "=" })
                    rest = rest.dropFirst(key.count)
                    guard rest.hasPrefix("=\"") else { Issue.record("bad label in \(line)"); return samples }
                    rest = rest.dropFirst(2)
                    var value = ""
                    while let c = rest.first, c != "\"" {
                        rest = rest.dropFirst()
                        if c == "\\", let next = rest.first {
                            rest = rest.dropFirst()
                            value.append(next == "n" ? "\n" : next)
                        } else {
                            value.append(c)
                        }
                    }
                    rest = rest.dropFirst()
                    labels[key] = value
                    if rest.first == "," { rest = rest.dropFirst() }
                }
                rest = rest.dropFirst()
            }
            guard let value = Double(rest.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "+Inf", with: "inf")) else {
                Issue.record("bad value in \(line)")
                return samples
            }
            samples.append(PrometheusSample(name: name, labels: labels, value: value))
        }
        return samples
    }
}

@Suite("Per-group gauges (real process)")
struct GroupMetricsTests {
    /// Groups get gauges labelled by the group-by keys (a value with `"`, `\` and a newline survives escaping),
    /// at most --metrics-max-groups of them, the most recently updated; the values are eval's over the same
    /// files; `complete` turns 1 (and the log says so) when the missing rank arrives.
    @Test func groupGaugesAreLabelledBoundedAndEvalsValues() throws {
        let dir = TempDirectory()
        defer { dir.remove() }
        let spool = dir.sub("spool"), out = dir.sub("out"), source = dir.sub("src")
        try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
        let odd = "m\"q\\b\nx"
        let shards: [(name: String, meta: String, rows: Int)] = [
            ("b.lshd.zst", #"{"model": "plain", "checkpoint": 2, "split": "test"}"#, 7),
            ("c.lshd.zst", #"{"model": "plain", "checkpoint": 3, "split": "test"}"#, 9),
            ("a0.lshd.zst", #"{"model": "m\"q\\b\nx", "checkpoint": 1, "split": "validation", "shard_index": 0, "num_shards": 2}"#, 11),
            ("a1.lshd.zst", #"{"model": "m\"q\\b\nx", "checkpoint": 1, "split": "validation", "shard_index": 1, "num_shards": 2}"#, 13),
        ]
        for shard in shards { try Files.write(try ShardFactory.withMeta(shard.meta, rows: shard.rows, classes: 5), to: source + "/" + shard.name) }
        let daemon = try DaemonProcess(servingIn: dir, metricsListen: "127.0.0.1:0", extraArgs: ["--metrics-max-groups", "2"])
        defer {
            daemon.signal(SIGTERM)
            _ = daemon.waitForExit()
        }
        let port = try #require(daemon.metricsPort())
        func scrape(after count: Int) throws -> [PrometheusSample] {
            let shard = shards[count - 1]
            try Files.drop(Array(try Data(contentsOf: URL(fileURLWithPath: source + "/" + shard.name))), named: shard.name, in: spool)
            #expect(eventually { (try? Files.json(out + "/totals.json")["shards_ok"]) == .int(Int64(count)) }, "\(daemon.log)")
            var samples: [PrometheusSample] = []
            // The gauges follow totals.json once the loop has taken the result in.
            _ = eventually { () -> Bool in
                samples = PrometheusSample.parse((try? httpRequest(port: port, "GET", "/metrics").body) ?? "")
                // The group of the shard just dropped shows its shards ([2, 3, 1, 1] are their checkpoints).
                let (checkpoint, members) = [("2", 1.0), ("3", 1.0), ("1", 1.0), ("1", 2.0)][count - 1]
                return samples.contains { $0.name == "smoothd_group_shards" && $0.labels["checkpoint"] == checkpoint && $0.value == members }
            }
            return samples
        }
        func value(_ samples: [PrometheusSample], _ name: String, model: String, checkpoint: String) -> Double? {
            samples.first { $0.name == name && $0.labels == ["model": model, "checkpoint": checkpoint, "split": $0.labels["split"] ?? ""] }?.value
        }
        for count in 1...2 { _ = try scrape(after: count) }
        var samples = try scrape(after: 3)
        #expect(samples.first { $0.name == "smoothd_groups_omitted" }?.value == 1, "three groups, two shown")
        #expect(value(samples, "smoothd_group_shards", model: "plain", checkpoint: "2") == nil, "the least recently updated is left out")
        #expect(value(samples, "smoothd_group_complete", model: odd, checkpoint: "1") == 0, "rank 1 of 2 is missing")
        #expect(value(samples, "smoothd_group_complete", model: "plain", checkpoint: "3") == 1)

        samples = try scrape(after: 4)
        #expect(value(samples, "smoothd_group_complete", model: odd, checkpoint: "1") == 1)
        #expect(value(samples, "smoothd_group_shards", model: odd, checkpoint: "1") == 2)
        #expect(samples.first { $0.name == "smoothd_group_shards" && $0.labels["model"] == odd }?.labels["split"] == "validation")
        #expect((value(samples, "smoothd_group_last_update_timestamp_seconds", model: odd, checkpoint: "1") ?? 0) > 1_600_000_000)
        #expect(samples.contains { $0.name == "smoothd_totals_loss" }, "the overall gauges stay")
        #expect(daemon.log.contains("group is complete"))

        // eval over the same two files gives the numbers.
        let eval = Process()
        eval.executableURL = URL(fileURLWithPath: try Binary.smoothd())
        eval.arguments = ["eval", "--json", source + "/a0.lshd.zst", source + "/a1.lshd.zst"]
        let pipe = Pipe()
        eval.standardOutput = pipe
        eval.standardError = FileHandle.nullDevice
        try eval.run()
        let document = try JSONValue.parse(utf8: pipe.fileHandleForReading.readDataToEndOfFile())
        eval.waitUntilExit()
        let group = try #require(document["groups"]?.arrayValue?.first)
        for (gauge, key) in [("smoothd_group_loss", "loss"), ("smoothd_group_nll", "nll"), ("smoothd_group_accuracy", "accuracy"),
                             ("smoothd_group_top_k_accuracy", "top_k_accuracy"), ("smoothd_group_ece", "ece"), ("smoothd_group_counted_rows", "counted_rows")] {
            #expect(value(samples, gauge, model: odd, checkpoint: "1") == group[key]?.doubleValue, "\(gauge) is eval's \(key)")
        }
    }
}
