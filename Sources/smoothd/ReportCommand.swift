import ArgumentParser
import Foundation
import SmoothdDaemon
import SmoothdJSON
import SmoothdPipeline
import SmoothdReport
import SmoothdResults

/// `smoothd report`: evaluate shards and read results, merge them as `smoothd merge` does, and write one
/// self-contained HTML report.
struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write a self-contained HTML report: metric tables, reliability diagrams, checkpoint trends.",
        discussion: """
        Each INPUT is a shard (an LSHD file: zstd data, or a name ending in .lshd.zst), which is evaluated, or \
        anything smoothd merge reads: an eval --json output, a NAME.summary.json or NAME.error.json, or a serve \
        output directory. They are grouped, superseded and merged exactly as smoothd merge does.

        The page (inline SVG and CSS, no script needed, nothing fetched) holds a header with the options; per group \
        the metric table and a reliability diagram (rows per confidence bin above accuracy per bin, with the \
        diagonal, the gap and ECE/MCE); per (model, split) with several checkpoints, trends of loss, NLL, accuracy, \
        top-k accuracy and ECE, ordered by the numeric meta step, else by checkpoint name (digit runs as numbers); \
        with --bootstrap R, 95 % intervals next to the metrics; with --compare-a and --compare-b, the comparison \
        smoothd compare prints; the invalid shards; and the document smoothd merge --json would print, as \
        <script type="application/json" id="smoothd-data">.

        Exit status: 0 when every shard is valid and every input was read; 1 otherwise (the report is still \
        written, listing what was wrong); 64 for usage errors.
        """)

    @OptionGroup var metricOptions: MetricOptionGroup

    @OptionGroup var runOptions: RunOptionGroup

    @Option(name: [.short, .customLong("output")], help: ArgumentHelp("The HTML file to write.", valueName: "file"))
    var output = "smoothd-report.html"

    @Option(help: ArgumentHelp("With --compare-b: add a comparison of the group this selects (key=value[,key=value]) with --compare-b's.", valueName: "selector"))
    var compareA: String?

    @Option(help: ArgumentHelp("The B side of the comparison (differences are B − A).", valueName: "selector"))
    var compareB: String?

    @OptionGroup var inputOptions: ResultInputOptions

    func validate() throws {
        if (compareA == nil) != (compareB == nil) { throw ValidationError("--compare-a and --compare-b go together") }
        try ResultInputOptions.validateSelectors([compareA, compareB].compactMap({ $0 }))
    }

    func run() throws {
        let merged = try ReportCommand.merge(inputOptions.inputs, metricOptions: metricOptions, runOptions: runOptions)
        var document = try ReportDocument(merged, generatedAt: WallClock.iso8601(WallClock.now()))
        if let compareA, let compareB {
            do {
                document.comparison = try Comparison(merged, a: GroupSelector(parsing: compareA), b: GroupSelector(parsing: compareB))
            } catch {
                FileHandle.standardError.write(Data("smoothd: error: \(error)\n".utf8))
                throw ExitCode(1)
            }
        }
        let html = HTMLReport.render(document)
        do {
            try Data(html.utf8).write(to: URL(fileURLWithPath: output), options: .atomic)
        } catch {
            throw ReportWriteError(path: output, reason: error.localizedDescription)
        }
        FileHandle.standardError.write(Data("smoothd: wrote \(output) (\(document.groups.count) groups, \(html.utf8.count) bytes)\n".utf8))
        if merged.hasErrors || merged.total.shardsFailed > 0 { throw ExitCode(1) }
    }

    /// Evaluates the shards among `inputs`, reads the rest, and merges them all as `smoothd merge` does, with the
    /// warnings and input errors on stderr (`report` and `compare`).
    static func merge(_ inputs: [String], metricOptions: MetricOptionGroup, runOptions: RunOptionGroup) throws -> MergeReport {
        let options = try metricOptions.evaluationOptions()
        let evaluator = ShardEvaluator(options: options)
        let loaded = inputs.map { path -> ResultInput in
            guard ReportCommand.isShard(path) else { return ResultInput.load(path) }
            let progress = ProgressDisplay(shard: path)
            defer { progress.stop() }
            return ResultInput(evaluatedShard: path, outcome: evaluator.evaluate(path: path, progress: progress.counter))
        }
        let merged = MergeReport(loaded, options: MergeOptions(metrics: options.metrics, groupBy: try runOptions.parsedGroupBy(),
                                                               failOnNonfinite: runOptions.failOnNonfinite))
        for warning in merged.warnings { FileHandle.standardError.write(Data("smoothd: warning: \(warning)\n".utf8)) }
        for error in merged.errors { FileHandle.standardError.write(Data("smoothd: error: \(error)\n".utf8)) }
        return merged
    }

    /// A shard: named `*.lshd.zst`, or a file starting with a zstd frame or a skippable frame (results are JSON text).
    static func isShard(_ path: String) -> Bool {
        if path.hasSuffix(".lshd.zst") { return true }
        guard let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        let head = [UInt8]((try? handle.read(upToCount: 4)) ?? Data())
        guard head.count == 4 else { return false }
        let magic = UInt32(head[0]) | UInt32(head[1]) << 8 | UInt32(head[2]) << 16 | UInt32(head[3]) << 24
        return magic == 0xFD2F_B528 || magic & 0xFFFF_FFF0 == 0x184D_2A50
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
