import ArgumentParser
import Foundation
import SmoothdJSON
import SmoothdMetrics
import SmoothdPipeline
import SmoothdRuns

/// `smoothd eval`: evaluate shards once and print a table or one JSON document.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Evaluate shards and print their metrics, per group and in total.",
        discussion: """
        Shards are grouped by meta keys (--group-by). A shard with the identity of an earlier one on the \
        command line (the same run and shard_index, or without shard_index the same file name) supersedes it: \
        only the later one is counted, with a warning. Warnings (re-runs, disagreeing num_shards, non-finite \
        rows) go to stderr.

        Exit status: 0 when every shard is valid; 1 when any shard is invalid (the valid ones are still \
        reported), including a non-scalar group-by value (group_key_not_scalar), unusable ranks \
        (bad_shard_index) and, with --fail-on-nonfinite, non-finite rows (nonfinite_rows); 64 for usage errors.
        """)

    @OptionGroup var metricOptions: MetricOptionGroup

    @OptionGroup var runOptions: RunOptionGroup

    @Flag(help: "Print one JSON document: {\"shards\": [ENTRY, …], \"total\": TOTAL, \"groups\": [GROUP, …], \"warnings\": [WARNING, …]}.")
    var json = false

    @Argument(help: ArgumentHelp("Shard files (NAME.lshd.zst); a later file supersedes an earlier one of the same identity.", valueName: "shard"))
    var shards: [String]

    func run() throws {
        let options = try metricOptions.evaluationOptions()
        let groupBy = try runOptions.parsedGroupBy()
        let evaluator = ShardEvaluator(options: options)
        var outcomes: [ShardOutcome] = []
        for shard in shards {
            let progress = ProgressDisplay(shard: shard)
            outcomes.append(evaluator.evaluate(path: shard, progress: progress.counter))
            progress.stop()
        }
        let report = EvalReport(outcomes, groupBy: groupBy, options: options.metrics, failOnNonfinite: runOptions.failOnNonfinite)
        for warning in EvalCommand.warnings(report) {
            FileHandle.standardError.write(Data("smoothd: warning: \(warning)\n".utf8))
        }
        if json {
            print(report.json.serialized(pretty: true))
        } else {
            print(ResultTable.render(report, options: options.metrics), terminator: "")
        }
        if report.total.shardsFailed > 0 { throw ExitCode(1) }
    }

    /// One line per re-run, per run disagreeing on num_shards, per live shard with non-finite rows.
    static func warnings(_ report: EvalReport) -> [String] { report.warnings.map(\.message) }
}

/// The options of commands that read results as runs: how to group them, and whether non-finite rows fail a shard.
struct RunOptionGroup: ParsableArguments {
    @Option(help: ArgumentHelp("Meta keys to group results by, comma-separated, or none for one group. (default: \(GroupBy.standard))", valueName: "key,…"))
    var groupBy: String?

    @Flag(inversion: .prefixedNo, help: "Treat a shard with rows whose logits are not finite as invalid (kind nonfinite_rows, exit 1) instead of leaving those rows out with a warning.")
    var failOnNonfinite = false

    /// The group-by given, or the default.
    func parsedGroupBy() throws -> GroupBy {
        guard let groupBy else { return .standard }
        do { return try GroupBy(parsing: groupBy) } catch { throw ValidationError(error.description) }
    }

    func validate() throws {
        _ = try parsedGroupBy()
    }
}
