import ArgumentParser
import Foundation
import SmoothdJSON
import SmoothdMetrics
import SmoothdPipeline

/// `smoothd eval`: evaluate shards once and print a table or one JSON document.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Evaluate shards and print their metrics and a total.",
        discussion: """
        Exit status: 0 when every shard is valid; 1 when any shard is invalid (the valid ones are still \
        reported); 64 for usage errors.
        """)

    @OptionGroup var metricOptions: MetricOptionGroup

    @Flag(help: "Print one JSON document: {\"shards\": [ENTRY, …], \"total\": TOTAL}.")
    var json = false

    @Argument(help: ArgumentHelp("Shard files (NAME.lshd.zst).", valueName: "shard"))
    var shards: [String]

    func validate() throws {
        if shards.isEmpty { throw ValidationError("give at least one shard") }
    }

    func run() throws {
        let options = try metricOptions.evaluationOptions()
        let evaluator = ShardEvaluator(options: options)
        var outcomes: [ShardOutcome] = []
        for shard in shards {
            let progress = ProgressDisplay(shard: shard)
            outcomes.append(evaluator.evaluate(path: shard, progress: progress.counter))
            progress.stop()
        }
        let report = EvalReport(outcomes, options: options.metrics)
        if json {
            print(report.json.serialized(pretty: true))
        } else {
            print(ResultTable.render(report, options: options.metrics), terminator: "")
        }
        if report.total.shardsFailed > 0 { throw ExitCode(1) }
    }
}
