import ArgumentParser

/// `smoothd`: label-smoothed cross-entropy and calibration metrics for LSHD shards.
@main
struct SmoothdCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "smoothd",
        abstract: "Evaluate LSHD v1 shards (zstd-compressed logits and labels): label-smoothed loss, NLL, accuracy, calibration.",
        version: "0.1.0",
        subcommands: [EvalCommand.self, MergeCommand.self, ReportCommand.self, CompareCommand.self, ServeCommand.self]
    )
}
