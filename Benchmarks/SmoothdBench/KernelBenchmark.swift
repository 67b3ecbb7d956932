import Foundation
import LSHDFormat
import SmoothdMetrics
import SmoothdTesting

/// Times the row kernel alone on one thread over rows already in memory (the CPU's kernel variant).
enum KernelBenchmark {
    /// G logits per second.
    static func run(dtype: LogitDType, numClasses k: Int, seconds: Double) -> Double {
        let rows = max(8, (32 << 20) / (k * dtype.byteWidth))  // ~32 MiB of rows: beyond the caches, like real chunks
        var shard = SyntheticShard(numClasses: k, rows: rows, dtype: dtype, rowsPerBlock: rows)
        shard.ignoredFraction = 0
        var rng = SplitMix(state: 9)
        var block = shard.makeBlock(rows: rows, rng: &rng)
        block.bytes += [UInt8](repeating: 0, count: RowKernel.readSlack)
        let kernel = KernelVariant.current.function(for: dtype)
        var processed = 0
        var sink = 0.0
        let start = Date()
        repeat {
            block.bytes.withUnsafeBytes { raw in
                for r in 0..<rows {
                    sink += kernel(raw.baseAddress! + r * k * dtype.byteWidth, k, Int(block.labels[r])).nll
                }
            }
            processed += rows * k
        } while Date().timeIntervalSince(start) < seconds
        let elapsed = Date().timeIntervalSince(start)
        if sink.isNaN { print("nan") }  // keeps the loop's work observable
        return Double(processed) / elapsed / 1e9
    }
}
