import LSHDFormat
import SmoothdMetrics

/// The temperature pass of a chunk: after the main kernel, one exp pass per temperature over the same rows
/// (only when `--temperatures` is given, so a run without a sweep pays nothing).
final class TemperatureSweep {
    let kernel: RowKernel.TemperatureBatchFunction
    let betas: [Double]
    let statistics: UnsafeMutablePointer<TemperatureRowStatistics>
    let numClasses: Int
    let rowBytes: Int
    let ignoreIndex: Int64

    /// A sweep of `betas` (1/T) for rows of `header` stored `rowBytes` apart, in batches of at most `batch` rows.
    init(header: ShardHeader, rowBytes: Int, betas: [Double], batch: Int) {
        kernel = KernelVariant.current.temperatureBatchFunction(for: header.logitDType)
        self.betas = betas
        statistics = .allocate(capacity: batch * betas.count)
        numClasses = header.numClasses
        self.rowBytes = rowBytes
        ignoreIndex = header.ignoreIndex
    }

    deinit { statistics.deallocate() }

    /// Runs the temperature kernel over `count` rows and adds the counted ones (finite, not ignored: `rows` are the
    /// main kernel's statistics) to `accumulator`.
    func add(_ first: UnsafeRawPointer, _ labels: UnsafePointer<Int64>, _ count: Int,
             _ rows: UnsafePointer<RowStatistics>, _ accumulator: inout MetricAccumulator) {
        betas.withUnsafeBufferPointer { betas in
            kernel(first, numClasses, rowBytes, labels, count, ignoreIndex, betas.baseAddress!, betas.count, statistics)
        }
        for r in 0..<count where labels[r] != ignoreIndex && rows[r].isFinite {
            accumulator.addTemperatures(statistics + r * betas.count, correct: rows[r].rank == 0)
        }
    }
}
