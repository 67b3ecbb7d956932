import ArgumentParser
import Foundation
import SmoothdJSON
import SmoothdMetrics
import SmoothdResults

/// `smoothd compare`: the differences between two groups (say two checkpoints), with bootstrap intervals that are
/// paired when both evaluated the same rows.
struct CompareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Compare two groups' metrics (B − A), with 95 % bootstrap intervals of the differences.",
        discussion: """
        INPUTs are what smoothd report takes (shards, which are evaluated, eval --json outputs, summaries, serve \
        output directories); they are merged per group as smoothd merge does, and --a and --b each select one group: \
        key=value[,key=value] over the group-by keys (model=m,checkpoint=c2). With --bootstrap R (the states must \
        keep R replicates: evaluate with the same --bootstrap R) the differences of loss, nll, accuracy, \
        top_k_accuracy and ece get 95 % percentile intervals. They are paired (far narrower for correlated \
        checkpoints) when every shard of A has a shard of B with the same shard_index and the same labels digest, \
        and vice versa; otherwise the replicates are treated as independent, and the output says why.

        Exit status: 0 when every input was read; 1 when an input is bad or a selector matches no group or several \
        (named on stderr); 64 for usage errors.
        """)

    @OptionGroup var metricOptions: MetricOptionGroup

    @OptionGroup var runOptions: RunOptionGroup

    @Option(name: .customLong("a"), help: ArgumentHelp("The group A: key=value[,key=value] over the group-by keys.", valueName: "selector"))
    var a: String

    @Option(name: .customLong("b"), help: ArgumentHelp("The group B (differences are B − A).", valueName: "selector"))
    var b: String

    @Flag(help: "Print one JSON document: {\"a\": KEY, \"b\": KEY, \"paired\", \"pairing\", \"bootstrap\", \"differences\": {METRIC: {\"a\", \"b\", \"difference\", \"interval\"}}}.")
    var json = false

    @OptionGroup var inputOptions: ResultInputOptions

    func validate() throws {
        try ResultInputOptions.validateSelectors([a, b])
    }

    func run() throws {
        let merged = try ReportCommand.merge(inputOptions.inputs, metricOptions: metricOptions, runOptions: runOptions)
        let comparison: Comparison
        do {
            comparison = try Comparison(merged, a: GroupSelector(parsing: a), b: GroupSelector(parsing: b))
        } catch {
            FileHandle.standardError.write(Data("smoothd: error: \(error)\n".utf8))
            throw ExitCode(1)
        }
        print(json ? comparison.json.serialized(pretty: true) : CompareCommand.table(comparison), terminator: json ? "\n" : "")
        if merged.hasErrors { throw ExitCode(1) }
    }

    /// The text form: the two keys, the pairing, and one line per metric.
    static func table(_ comparison: Comparison) -> String {
        func number(_ value: Double?) -> String { value.map { String(format: "%.6f", $0) } ?? "-" }
        var lines = ["A: \(comparison.a.key) (\(comparison.a.shards.count) shards)", "B: \(comparison.b.key) (\(comparison.b.shards.count) shards)",
                     "\(comparison.paired ? "paired" : "unpaired"): \(comparison.pairing)"]
        lines.append(comparison.replicates > 0 ? "bootstrap: \(comparison.replicates) replicates, 95 % percentile intervals of B − A"
                                               : "bootstrap: none (no intervals: evaluate and compare with --bootstrap R)")
        let header = ["metric", "a", "b", "b - a", "95 % interval"]
        var rows = [header]
        for d in comparison.differences {
            let interval = d.bootstrapped ? (d.interval.map { "[\(number($0.lower)), \(number($0.upper))]" } ?? "-") : ""
            rows.append([d.metric, number(d.a), number(d.b), number(d.difference), interval])
        }
        let widths = (0..<header.count).map { c in rows.map { $0[c].count }.max()! }
        for row in rows {
            let cells = row.enumerated().map { c, cell in
                c == 0 ? cell.padding(toLength: widths[c], withPad: " ", startingAt: 0)
                       : String(repeating: " ", count: widths[c] - cell.count) + cell
            }
            lines.append(cells.joined(separator: "  ").replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression))
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
