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
        var total = MetricAccumulator(options: options.metrics)
        var failed = 0
        for outcome in outcomes {
            switch outcome {
            case .success(let summary): total.merge(summary.accumulator)
            case .failure: failed += 1
            }
        }
        let totalEntry = ShardReport.total(accumulator: total, shardsOK: outcomes.count - failed, shardsFailed: failed, options: options.metrics)
        if json {
            let document = JSONValue.object([
                ("shards", .array(outcomes.map { ShardReport.entry($0, options: options.metrics) })),
                ("total", totalEntry),
            ])
            print(document.serialized(pretty: true))
        } else {
            print(ResultTable.render(outcomes: outcomes, total: totalEntry, options: options.metrics), terminator: "")
        }
        if failed > 0 { throw ExitCode(1) }
    }
}
