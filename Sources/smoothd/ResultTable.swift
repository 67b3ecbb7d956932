import Foundation
import SmoothdMetrics
import SmoothdPipeline

/// The human-readable report of `smoothd eval`: one row per shard, a total row, then errors.
enum ResultTable {
    static func render(_ report: EvalReport, options: MetricOptions) -> String {
        let columns = ["shard", "rows", "counted", "loss", "nll", "ppl", "acc", "top\(options.topK)", "conf", "entropy", "brier", "ece"]
        var lines: [[String]] = [columns]
        var errors: [String] = []
        func metricRow(_ name: String, _ metrics: MetricReport) -> [String] {
            let v = metrics.values
            return [name, String(metrics.rows), String(metrics.countedRows)]
                + [v.loss, v.nll, v.perplexity, v.accuracy, v.topKAccuracy, v.meanConfidence, v.entropy, v.brier, v.ece].map(number)
        }
        for entry in report.shards {
            switch entry {
            case .valid(let shard):
                lines.append(metricRow(shard.summary.shard, shard.metrics))
            case .invalid(let failure):
                lines.append([failure.shard, "INVALID"] + Array(repeating: "", count: columns.count - 2))
                errors.append("\(failure.shard): invalid: \(failure.error)")
            }
        }
        let total = report.total
        lines.append(metricRow("total (\(total.shardsOK) ok, \(total.shardsFailed) invalid)", total.metrics))
        let widths = columns.indices.map { c in lines.map { $0[c].count }.max() ?? 0 }
        var out = ""
        for (i, line) in lines.enumerated() {
            let cells = line.enumerated().map { c, cell in
                c == 0 ? cell.padding(toLength: widths[c], withPad: " ", startingAt: 0) : String(repeating: " ", count: widths[c] - cell.count) + cell
            }
            out += cells.joined(separator: "  ") + "\n"
            if i == 0 || i == lines.count - 2 { out += widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ") + "\n" }
        }
        let losses = total.metrics.values.lossesBySmoothing
        if losses.count > 1 {
            out += "total loss (\(options.mode.rawValue)) by ε: "
                + losses.map { "\(ShardReport.smoothingKey($0.smoothing)): \(number($0.loss))" }.joined(separator: ", ") + "\n"
        }
        for error in errors { out += error + "\n" }
        return out
    }

    static func number(_ value: Double?) -> String {
        guard let v = value else { return "-" }
        return String(format: "%.6f", v)
    }
}
