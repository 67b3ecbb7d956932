import Foundation
import SmoothdMetrics
import SmoothdPipeline
import SmoothdRuns

/// The human-readable report of `smoothd eval` and `smoothd merge`: a line saying what `loss` is, one block per group (when
/// there is more than one) with its shards and group total, the overall total, then errors.
enum ResultTable {
    /// A shard's row: its counts and metrics, or a note in their place.
    enum Cells {
        case metrics(MetricReport)
        case note(String)
    }

    /// One shard of the table: its name, its group (nil: shown after the groups) and its cells.
    struct ShardRow {
        var name: String
        var group: RunKey?
        var cells: Cells
    }

    /// `eval`'s table.
    static func render(_ report: EvalReport, options: MetricOptions) -> String {
        var rows: [ShardRow] = []
        var errors: [String] = []
        for shard in report.shards {
            switch shard.entry {
            case .valid(let entry):
                let cells = shard.supersededBy.map { Cells.note("superseded by \($0)") } ?? .metrics(entry.metrics)
                rows.append(ShardRow(name: entry.summary.shard, group: shard.group, cells: cells))
            case .invalid(let failure):
                rows.append(ShardRow(name: failure.shard, group: nil, cells: .note("INVALID")))
                errors.append("\(failure.shard): invalid: \(failure.error)")
            }
        }
        return render(rows, groups: report.groups, total: report.total, notes: errors, options: options)
    }

    /// The table of `shards` (in order) in `groups` (when there is more than one), `total`, then `notes`,
    /// one line each (invalid shards, bad inputs).
    static func render(_ shards: [ShardRow], groups: [GroupReport], total: TotalReport, notes: [String], preamble: [String] = [],
                       options: MetricOptions) -> String {
        let columns = ["shard", "rows", "counted", "ignored", "nonfinite", "loss", "nll", "ppl", "acc", "top\(options.topK)",
                       "conf", "entropy", "brier", "ece", "aECE"]
        func metricRow(_ name: String, _ metrics: MetricReport) -> [String] {
            let v = metrics.values
            return [name, String(metrics.rows), String(metrics.countedRows), String(metrics.ignoredRows), String(metrics.nonfiniteRows)]
                + [v.loss, v.nll, v.perplexity, v.accuracy, v.topKAccuracy, v.meanConfidence, v.entropy, v.brier, v.ece, v.adaptiveECE].map(number)
        }
        // A shard and a note in place of its numbers; the note does not widen the rows column.
        func textRow(_ name: String, _ text: String) -> [String] { [name, text] }

        // Blocks of rows; a line of dashes separates a block's shards from its total.
        var blocks: [(title: String?, rows: [[String]], total: [String]?)] = []
        let grouped = groups.count > 1
        var rowsByGroup: [RunKey: [[String]]] = [:]
        var ungrouped: [[String]] = []
        // A row whose group has no live shard (a re-run by file name placed elsewhere) is shown after the groups.
        let shown = Set(groups.map(\.key))
        for shard in shards {
            let row: [String]
            switch shard.cells {
            case .metrics(let metrics): row = metricRow(shard.name, metrics)
            case .note(let note): row = textRow(shard.name, note)
            }
            if grouped, let key = shard.group, shown.contains(key) { rowsByGroup[key, default: []].append(row) } else { ungrouped.append(row) }
        }
        if grouped {
            for group in groups {
                blocks.append((title(group), rowsByGroup[group.key] ?? [], metricRow("subtotal (\(group.shards.count) shard\(group.shards.count == 1 ? "" : "s"))", group.metrics)))
            }
        }
        let totalRow = metricRow("total (\(total.shardsOK) ok, \(total.shardsFailed) invalid)", total.metrics)
        if grouped {
            blocks.append((ungrouped.isEmpty ? "all groups" : "all groups (the invalid shards are in none)", ungrouped, totalRow))
        } else {
            blocks.append((groups.first.map(title), ungrouped, totalRow))
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
        var out = "loss: \(lossDescription(options))\n" + preamble.map { $0 + "\n" }.joined()
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
        for note in notes { out += note + "\n" }
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
