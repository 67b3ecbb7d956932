import ArgumentParser
import SmoothdMetrics
import SmoothdPipeline

extension SmoothingMode: ExpressibleByArgument {
    /// `uniform`, `others`, or their aliases `pytorch` and `fairseq`.
    public init?(argument: String) { self.init(name: argument) }

    /// The names accepted, for help and completion.
    public static var allValueStrings: [String] { names }
}

/// The options `eval` and `serve` share: what to compute and how many resources to use.
/// Defaults are the values of `MetricOptions` and `EvaluationOptions`, which the help shows; `threads` has none
/// (the number of cores) and `reportSmoothing` is empty unless given.
struct MetricOptionGroup: ParsableArguments {
    @Option(help: ArgumentHelp("Label smoothing ε for the reported loss, in [0, 1].", valueName: "ε"))
    var smoothing = MetricOptions().smoothing

    @Option(help: ArgumentHelp("uniform or pytorch (PyTorch: gold 1−ε+ε/K, others ε/K), others or fairseq (fairseq: gold 1−ε, others ε/(K−1)).", valueName: "mode"))
    var smoothingMode = MetricOptions().mode

    @Option(help: ArgumentHelp("More ε values whose loss is reported from the same pass, comma-separated.", valueName: "ε1,ε2,…"))
    var reportSmoothing: String?

    @Option(help: ArgumentHelp("k for top-k accuracy.", valueName: "k"))
    var topK = MetricOptions().topK

    @Option(help: ArgumentHelp("Equal-width confidence bins for ECE.", valueName: "n"))
    var eceBins = MetricOptions().eceBins

    @Option(help: ArgumentHelp("Temperatures T > 0 to sweep (metrics of softmax(z/T) and the best T), comma-separated.", valueName: "T1,T2,…"))
    var temperatures: String?

    @Option(help: ArgumentHelp("Keep R Poisson-bootstrap replicates and report 95 % intervals (states of other R do not merge). (default: none)", valueName: "R"))
    var bootstrap: Int?

    @Option(help: ArgumentHelp("Worker threads. (default: number of cores)", valueName: "n"))
    var threads: Int?

    @Option(help: ArgumentHelp("Bound for the pipeline's buffers, in bytes or with KiB/MiB/GiB.", valueName: "bytes"))
    var memoryBudget = MetricOptionGroup.defaultMemoryBudget

    /// `--memory-budget` when not given: `EvaluationOptions`' default, as the help shows it.
    static let defaultMemoryBudget = "\(EvaluationOptions.defaultMemoryBudget >> 20)MiB"

    /// The options (`serve` merges its config file into the arguments before parsing, so the file's values
    /// arrive here as flags).
    func evaluationOptions() throws -> EvaluationOptions {
        var metrics = MetricOptions(smoothing: smoothing, mode: smoothingMode, topK: topK, eceBins: eceBins)
        if let bootstrap {
            guard bootstrap >= 1 else { throw ValidationError("--bootstrap must be in [1, \(BootstrapState.maxReplicates)] (got \(bootstrap))") }
            metrics.bootstrapReplicates = bootstrap
        }
        if let reportSmoothing {
            metrics.reportSmoothing = try reportSmoothing.split(separator: ",").map { part in
                let trimmed = part.trimmingCharacters(in: .whitespaces)
                guard let e = Double(trimmed) else { throw ValidationError("invalid --report-smoothing value '\(trimmed)'") }
                return e
            }
        }
        if let temperatures {
            metrics.temperatures = try temperatures.split(separator: ",", omittingEmptySubsequences: false).map { part in
                let trimmed = part.trimmingCharacters(in: .whitespaces)
                guard let t = Double(trimmed), t > 0, t.isFinite else {
                    throw ValidationError("invalid --temperatures value '\(trimmed)' (each temperature must be a finite number > 0)")
                }
                return t
            }
        }
        if let problem = metrics.problems.first { throw ValidationError(problem) }
        if let threads, !(1...1024).contains(threads) { throw ValidationError("--threads must be in [1, 1024]") }
        guard let budget = MetricOptionGroup.parseBytes(memoryBudget), budget >= 1 else {
            throw ValidationError("invalid --memory-budget '\(memoryBudget)' (bytes, or a number with KiB, MiB or GiB)")
        }
        return EvaluationOptions(metrics: metrics, threads: threads, memoryBudget: budget)
    }

    func validate() throws {
        _ = try evaluationOptions()
    }

    /// Parses `65536`, `64KiB`, `64MiB`, `1GiB` (also `K`, `M`, `G`, `KB`… as binary units).
    static func parseBytes(_ text: String) -> Int? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let digits = trimmed.prefix { $0.isNumber }
        guard let number = Int(digits) else { return nil }
        let unit = trimmed.dropFirst(digits.count).lowercased()
        let shift: Int
        switch unit {
        case "", "b": shift = 0
        case "k", "kb", "kib": shift = 10
        case "m", "mb", "mib": shift = 20
        case "g", "gb", "gib": shift = 30
        default: return nil
        }
        let (value, overflow) = number.multipliedReportingOverflow(by: 1 << shift)
        return overflow ? nil : value
    }
}

import Foundation
