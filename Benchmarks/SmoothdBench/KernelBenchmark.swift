import Foundation
import LSHDFormat
import SmoothdMetrics
import SmoothdTesting
#if arch(x86_64)
import SmoothdKernelAVX2
import SmoothdKernelAVX512
#endif

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

/// Small K side by side: the row-at-a-time kernel all K used before and the batch kernel that runs now (the
/// lanes kernel up to `RowKernel.lanesMaxClasses`), each alone and followed by its exact accumulation as in a
/// chunk (before: `add(_:)` per row; now: the batch `add`).
enum SmallKBenchmark {
    /// M rows per second of each, float32, one thread, in the CPU's kernel variant (`variant`: the row-by-row
    /// kernel exists only in the AVX2 and AVX-512 builds). Seconds are the thread's CPU time, so that a busy
    /// machine slows the figures less than wall time would.
    static func run(numClasses k: Int, seconds: Double) -> (before: Double, now: Double, beforeChunk: Double, nowChunk: Double) {
        let rows = max(4096, (32 << 20) / (k * 4)) / 256 * 256
        var shard = SyntheticShard(numClasses: k, rows: rows, dtype: .float32, rowsPerBlock: rows)
        shard.ignoredFraction = 0.05
        var rng = SplitMix(state: 9)
        var block = shard.makeBlock(rows: rows, rng: &rng)
        block.bytes += [UInt8](repeating: 0, count: RowKernel.readSlack)
        let out = UnsafeMutablePointer<RowStatistics>.allocate(capacity: 256)
        defer { out.deallocate() }
        var sink = 0.0
        func time(_ kernel: RowKernel.BatchFunction, _ accumulate: Accumulation) -> Double {
            var processed = 0
            var accumulator = MetricAccumulator()
            let start = threadCPUSeconds()
            repeat {
                block.bytes.withUnsafeBytes { raw in
                    block.labels.withUnsafeBufferPointer { labels in
                        for first in stride(from: 0, to: rows, by: 256) {
                            kernel(raw.baseAddress! + first * k * 4, k, k * 4, labels.baseAddress! + first, 256, -100, out)
                            switch accumulate {
                            case .none:
                                sink += out[255].nll
                            case .rowByRow:
                                for r in 0..<256 {
                                    if labels[first + r] == -100 { accumulator.addIgnoredRow() } else { accumulator.add(out[r]) }
                                }
                            case .batch:
                                accumulator.add(out, labels: labels.baseAddress! + first, count: 256, ignoreIndex: -100)
                            }
                        }
                    }
                }
                processed += rows
            } while threadCPUSeconds() - start < seconds
            sink += accumulator.nllSum.value
            return Double(processed) / (threadCPUSeconds() - start) / 1e6
        }
        guard let rowByRow = variant.rowByRow else { return (0, 0, 0, 0) }
        let batch = variant.batchFunction(for: .float32)
        let before: Double = time(rowByRow, .none)
        let now: Double = time(batch, .none)
        let beforeChunk: Double = time(rowByRow, .rowByRow)
        let nowChunk: Double = time(batch, .batch)
        if sink.isNaN { print("nan") }  // keeps the work observable
        return (before, now, beforeChunk, nowChunk)
    }
}

extension SmallKBenchmark {
    /// The variant timed: `KernelVariant.current` unless it is the baseline, which has no row-by-row kernel.
    static var variant: KernelVariant { KernelVariant.current == .baseline && KernelVariant.supported.contains(.avx2) ? .avx2 : KernelVariant.current }
}

extension KernelVariant {
    /// The float32 batch kernel that runs `RowKernel.kernel` row by row whatever K is (what every K ran before
    /// the lanes kernel), in this variant; nil for the baseline.
    var rowByRow: RowKernel.BatchFunction? {
        #if arch(x86_64)
        switch self {
        case .avx512: return SmoothdKernelAVX512.RowKernelVariant.evaluateRowsFloat32RowByRow
        case .avx2: return SmoothdKernelAVX2.RowKernelVariant.evaluateRowsFloat32RowByRow
        case .baseline: return nil
        }
        #else
        return nil
        #endif
    }
}

/// What follows each kernel batch in `SmallKBenchmark`.
enum Accumulation { case none, rowByRow, batch }

/// CPU seconds the calling thread has used.
func threadCPUSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}
