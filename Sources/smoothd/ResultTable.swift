import SmoothdJSON
import SmoothdMetrics
import SmoothdPipeline

/// The human-readable report of `smoothd eval`: one row per shard, a total row, then errors.
enum ResultTable {
    static func render(outcomes: [ShardOutcome], total: JSONValue, options: MetricOptions) -> String {
        let columns = ["shard", "rows", "counted", "loss", "nll", "ppl", "acc", "top\(options.topK)", "conf", "entropy", "brier", "ece"]
        var lines: [[String]] = [columns]
        var errors: [String] = []
        func metricRow(_ name: String, _ entry: JSONValue) -> [String] {
            [name, count(entry["rows"]), count(entry["counted_rows"])]
                + ["loss", "nll", "perplexity", "accuracy", "top_k_accuracy", "mean_confidence", "entropy", "brier", "ece"].map { number(entry[$0]) }
        }
        for outcome in outcomes {
            switch outcome {
            case .success(let summary):
                lines.append(metricRow(summary.shard, ShardReport.entry(summary, options: options)))
            case .failure(let failure):
                lines.append([failure.shard, "INVALID"] + Array(repeating: "", count: columns.count - 2))
                errors.append("\(failure.shard): invalid: \(failure.error)")
            }
        }
        lines.append(metricRow("total (\(total["shards_ok"]?.intValue ?? 0) ok, \(total["shards_failed"]?.intValue ?? 0) invalid)", total))
        let widths = columns.indices.map { c in lines.map { $0[c].count }.max() ?? 0 }
        var out = ""
        for (i, line) in lines.enumerated() {
            let cells = line.enumerated().map { c, cell in
                c == 0 ? cell.padding(toLength: widths[c], withPad: " ", startingAt: 0) : String(repeating: " ", count: widths[c] - cell.count) + cell
            }
            out += cells.joined(separator: "  ") + "\n"
            if i == 0 || i == lines.count - 2 { out += widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ") + "\n" }
        }
        let losses = total["losses_by_smoothing"]?.objectMembers ?? []
        if losses.count > 1 {
            out += "total loss (\(options.mode.rawValue)) by ε: " + losses.map { "\($0.0): \(number($0.1))" }.joined(separator: ", ") + "\n"
        }
        for error in errors { out += error + "\n" }
        return out
    }

    static func count(_ value: JSONValue?) -> String { value?.intValue.map(String.init) ?? "" }

    static func number(_ value: JSONValue?) -> String {
        guard let v = value?.doubleValue else { return "-" }
        return String(format: "%.6f", v)
    }
}

import Foundation
