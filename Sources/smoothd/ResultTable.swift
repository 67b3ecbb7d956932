import Foundation
import SmoothdMetrics
import SmoothdPipeline
import SmoothdRuns

/// The human-readable report of `smoothd eval`: a line saying what `loss` is, one block per group (when
/// there is more than one) with its shards and group total, the overall total, then errors.
enum ResultTable {
    static func render(_ report: EvalReport, options: MetricOptions) -> String {
        let columns = ["shard", "rows", "counted", "ignored", "nonfinite", "loss", "nll", "ppl", "acc", "top\(options.topK)",
                       "conf", "entropy", "brier", "ece"]
        func metricRow(_ name: String, _ metrics: MetricReport) -> [String] {
            let v = metrics.values
            return [name, String(metrics.rows), String(metrics.countedRows), String(metrics.ignoredRows), String(metrics.nonfiniteRows)]
                + [v.loss, v.nll, v.perplexity, v.accuracy, v.topKAccuracy, v.meanConfidence, v.entropy, v.brier, v.ece].map(number)
        }
        // A shard and a note in place of its numbers; the note does not widen the rows column.
        func textRow(_ name: String, _ text: String) -> [String] { [name, text] }

        // Blocks of rows; a line of dashes separates a block's shards from its total.
        var blocks: [(title: String?, rows: [[String]], total: [String]?)] = []
        var errors: [String] = []
        let grouped = report.groups.count > 1
        var rowsByGroup: [RunKey: [[String]]] = [:]
        var ungrouped: [[String]] = []
        for shard in report.shards {
            switch shard.entry {
            case .valid(let entry):
                let row = shard.supersededBy.map { textRow(entry.summary.shard, "superseded by \($0)") }
                    ?? metricRow(entry.summary.shard, entry.metrics)
                if grouped, let key = shard.group { rowsByGroup[key, default: []].append(row) } else { ungrouped.append(row) }
            case .invalid(let failure):
                ungrouped.append(textRow(failure.shard, "INVALID"))
                errors.append("\(failure.shard): invalid: \(failure.error)")
            }
        }
        if grouped {
            for group in report.groups {
                blocks.append((title(group), rowsByGroup[group.key] ?? [], metricRow("subtotal (\(group.shards.count) shard\(group.shards.count == 1 ? "" : "s"))", group.metrics)))
            }
            // Superseded shards of a group that no longer has a live shard cannot occur (the re-run is in it).
        }
        let total = report.total
        let totalRow = metricRow("total (\(total.shardsOK) ok, \(total.shardsFailed) invalid)", total.metrics)
        if grouped {
            blocks.append((ungrouped.isEmpty ? "all groups" : "all groups (the invalid shards are in none)", ungrouped, totalRow))
        } else {
            blocks.append((report.groups.first.map(title), ungrouped, totalRow))
        }

        let allRows = [columns] + blocks.flatMap { $0.rows + ($0.total.map { [$0] } ?? []) }
        let widths = columns.indices.map { c in allRows.filter { c == 0 || $0.count == columns.count }.map { $0[c].count }.max() ?? 0 }
        func line(_ cells: [String]) -> String {
            if cells.count == 2 { return cells[0].padding(toLength: widths[0], withPad: " ", startingAt: 0) + "  " + cells[1] + "\n" }
            return cells.enumerated().map { c, cell in
                c == 0 ? cell.padding(toLength: widths[c], withPad: " ", startingAt: 0) : String(repeating: " ", count: max(0, widths[c] - cell.count)) + cell
            }.joined(separator: "  ").replacingOccurrences(of: " +$", with: "", options: .regularExpression) + "\n"
        }
        let rule = widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ") + "\n"
        var out = "loss: \(lossDescription(options))\n"
        for block in blocks {
            out += "\n"
            if let title = block.title { out += title + "\n" }
            out += line(columns) + rule
            for row in block.rows { out += line(row) }
            if let totalRow = block.total {
                if !block.rows.isEmpty { out += rule }
                out += line(totalRow)
            }
        }
        let losses = total.metrics.values.lossesBySmoothing
        if losses.count > 1 {
            out += "total loss (\(options.mode.rawValue)) by ε: "
                + losses.map { "\(ShardReport.smoothingKey($0.smoothing)): \(number($0.loss))" }.joined(separator: ", ") + "\n"
        }
        for error in errors { out += error + "\n" }
        return out
    }

    /// `label-smoothed cross-entropy, ε = 0.1, mode uniform (PyTorch label_smoothing)`.
    static func lossDescription(_ options: MetricOptions) -> String {
        let mode = switch options.mode {
        case .uniform: "uniform (PyTorch label_smoothing: gold 1−ε+ε/K, every class ε/K)"
        case .others: "others (fairseq: gold 1−ε, each other class ε/(K−1))"
        }
        return "label-smoothed cross-entropy, ε = \(ShardReport.smoothingKey(options.smoothing)), mode \(mode)"
    }

    /// `group model=lm-a checkpoint=ckpt-100 split=validation: 4 shards, complete (4 of 4 ranks)`.
    static func title(_ group: GroupReport) -> String {
        let key = group.key.members.isEmpty ? "(all shards)" : group.key.members.map { "\($0.0)=\($0.1.serialized())" }.joined(separator: " ")
        var text = "group \(key): \(group.shards.count) shard\(group.shards.count == 1 ? "" : "s")"
        if let c = group.completeness {
            text += c.isComplete ? ", complete (\(c.present) of \(c.expected) ranks)"
                : ", INCOMPLETE (\(c.present) of \(c.expected) ranks; missing \(c.json["missing"]!.serialized()))"
        }
        return text
    }

    static func number(_ value: Double?) -> String {
        guard let v = value else { return "-" }
        return String(format: "%.6f", v)
    }
}
