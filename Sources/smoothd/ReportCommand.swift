import ArgumentParser
import Foundation
import SmoothdDaemon
import SmoothdPipeline
import SmoothdReport

/// `smoothd report`: evaluate shards and write one self-contained HTML report.
struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write a self-contained HTML report: metric tables, reliability diagrams, checkpoint trends.",
        discussion: """
        The page (inline SVG and CSS, no script needed, nothing fetched) holds a header with the options; per group \
        the metric table and a reliability diagram (rows per confidence bin above accuracy per bin, with the \
        diagonal, the gap and ECE/MCE); per (model, split) with several checkpoints, trends of loss, NLL, accuracy, \
        top-k accuracy and ECE, ordered by the numeric meta step, else by checkpoint name (digit runs as numbers); \
        the invalid shards; and the data drawn, as <script type="application/json" id="smoothd-data">.

        Inputs are grouped and superseded as `smoothd eval` does. Exit status: 0 when every shard is valid; 1 when \
        any is invalid (the report is still written, listing it); 64 for usage errors.
        """)

    @OptionGroup var metricOptions: MetricOptionGroup

    @OptionGroup var runOptions: RunOptionGroup

    @Option(name: [.short, .customLong("output")], help: ArgumentHelp("The HTML file to write.", valueName: "file"))
    var output = "smoothd-report.html"

    @Argument(help: ArgumentHelp("Shard files (NAME.lshd.zst); a later file supersedes an earlier one of the same identity.", valueName: "input"))
    var inputs: [String]

    func validate() throws {
        if inputs.isEmpty { throw ValidationError("give at least one input") }
    }

    func run() throws {
        let report = try EvalCommand.evaluate(inputs, options: try metricOptions.evaluationOptions(), runOptions: runOptions)
        let document = try ReportDocument(report, inputs: inputs, generatedAt: WallClock.iso8601(WallClock.now()))
        let html = HTMLReport.render(document)
        do {
            try Data(html.utf8).write(to: URL(fileURLWithPath: output), options: .atomic)
        } catch {
            throw ReportWriteError(path: output, reason: error.localizedDescription)
        }
        FileHandle.standardError.write(Data("smoothd: wrote \(output) (\(document.groups.count) groups, \(html.utf8.count) bytes)\n".utf8))
        if report.total.shardsFailed > 0 { throw ExitCode(1) }
    }
}

/// The report file cannot be written.
struct ReportWriteError: Error, CustomStringConvertible {
    /// The path given with -o.
    var path: String
    /// Why.
    var reason: String
    /// Names the file and the reason.
    var description: String { "cannot write the report \(path): \(reason)" }
}
