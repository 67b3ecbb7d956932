import ArgumentParser
import Foundation
import SmoothdPipeline
import SmoothdResults
import SmoothdRuns

/// `smoothd merge`: combine the exact states of results computed elsewhere (other nodes, other daemons,
/// Slurm tasks) into one report, per group, as if one `eval` had read every shard.
struct MergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Merge eval --json outputs, serve summaries and serve output directories exactly, per group.",
        discussion: """
        Each INPUT is an eval --json output, a NAME.summary.json or NAME.error.json, or a serve output directory \
        (its summaries and error records; subdirectories such as superseded/ are not read). Groups and total are \
        bit-identical (timing aside) to one smoothd eval over all the underlying shards with the same options. \
        --top-k, --ece-bins and --bootstrap must be those the states were computed with; any --smoothing, --smoothing-mode \
        and --report-smoothing can be computed from a state. A shard seen twice (same identity) is counted once: \
        the later processed_at when both records have one, else the later in input order; a warning names both.

        Exit status: 0 when every input was read; 1 when any input is bad (unreadable, not JSON, truncated, an \
        unknown state_version, a state whose counts do not add up, or one of another top-k, bin count or R): it is \
        named on stderr and in "inputs", and the good inputs are still merged and reported. Invalid shards (error \
        records) are counted in shards_failed and do not change the exit status. 64 for usage errors.
        """)

    @OptionGroup var metricOptions: MetricOptionGroup

    @OptionGroup var runOptions: RunOptionGroup

    @Flag(help: "Print one JSON document: {\"inputs\": [INPUT, …], \"groups\": [GROUP, …], \"total\": TOTAL}.")
    var json = false

    @Argument(help: ArgumentHelp("eval --json outputs, *.summary.json / *.error.json files, serve output directories.", valueName: "input"))
    var inputs: [String]

    func validate() throws {
        // Merging reads no shard: the pipeline's resources mean nothing here, and silently ignoring them would mislead.
        // (A budget equal to the default cannot be told from none; it is harmless, so it passes.)
        if metricOptions.threads != nil || metricOptions.memoryBudget != MetricOptionGroup.defaultMemoryBudget {
            throw ValidationError("--threads and --memory-budget apply to eval and serve; merge reads no shards")
        }
    }

    func run() throws {
        let options = MergeOptions(metrics: try metricOptions.evaluationOptions().metrics, groupBy: try runOptions.parsedGroupBy(),
                                   failOnNonfinite: runOptions.failOnNonfinite)
        let report = MergeReport(paths: inputs, options: options)
        for warning in report.warnings { FileHandle.standardError.write(Data("smoothd: warning: \(warning)\n".utf8)) }
        for error in report.errors { FileHandle.standardError.write(Data("smoothd: error: \(error)\n".utf8)) }
        if json {
            print(report.json.serialized(pretty: true))
        } else {
            print(MergeCommand.table(report), terminator: "")
        }
        if report.hasErrors { throw ExitCode(1) }
    }

    /// The eval table of the merged records, after one line per input.
    static func table(_ report: MergeReport) -> String {
        var rows: [ResultTable.ShardRow] = []
        var notes: [String] = []
        var groupOf: [String: RunKey] = [:]
        for entry in report.entries { if case .counted(let group) = entry.status { groupOf[entry.record.source] = group } }
        for entry in report.entries {
            let name = entry.record.shard
            switch entry.status {
            case .counted(let group): rows.append(ResultTable.ShardRow(name: name, group: group, cells: .metrics(entry.metrics(options: report.options.metrics)!)))
            case .superseded(let by):
                rows.append(ResultTable.ShardRow(name: name, group: groupOf[by], cells: .note("superseded by \(by)")))
            case .invalid(let kind, let offset, let reason):
                rows.append(ResultTable.ShardRow(name: name, group: nil, cells: .note("INVALID")))
                notes.append("\(entry.record.source): invalid: \(kind): \(reason)" + (offset.map { " (payload offset \($0))" } ?? ""))
            }
        }
        notes += report.errors.map { "error: \($0)" }
        let preamble = report.inputs.map { input in
            "input \(input.path) (\(input.kind?.rawValue ?? "unreadable")): \(input.shardsOK) ok, \(input.shardsFailed) invalid"
                + (input.errors.isEmpty ? "" : ", \(input.errors.count) bad record\(input.errors.count == 1 ? "" : "s")")
        }
        return ResultTable.render(rows, groups: report.groups, total: report.total, notes: notes, preamble: preamble,
                                  options: report.options.metrics)
    }
}
