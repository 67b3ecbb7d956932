import SmoothdMetrics

/// How to evaluate shards: what to compute and with how many threads and how much buffer memory.
public struct EvaluationOptions: Sendable, Equatable {
    /// What to compute.
    public var metrics: MetricOptions
    /// Worker threads for the row kernel (decoding threads come on top, one per frame group in flight).
    public var threads: Int
    /// Upper bound for the pipeline's buffers (row chunks, zstd buffers and windows) in bytes.
    public var memoryBudget: Int

    /// Compressed bytes per frame group decoded by one thread; nil picks about four groups per
    /// thread of at least 1 MiB each. Tests set it small to exercise parallel frame decoding.
    public var segmentTargetBytes: Int?

    /// The default buffer budget, 64 MiB.
    public static let defaultMemoryBudget = 64 << 20

    /// Creates options; `threads` defaults to the number of online cores.
    public init(metrics: MetricOptions = MetricOptions(), threads: Int? = nil, memoryBudget: Int = EvaluationOptions.defaultMemoryBudget) {
        self.metrics = metrics
        self.threads = max(1, threads ?? EvaluationOptions.onlineCores)
        self.memoryBudget = memoryBudget
    }

    /// Cores available to this process.
    public static var onlineCores: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }
}

#if canImport(Glibc)
import Glibc
#endif
