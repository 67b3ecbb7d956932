import Foundation
import LSHDFormat
import SmoothdMetrics
import SmoothdPipeline

/// smoothd-bench: synthetic shards and kernel timing for Benchmarks/run.py (release builds only).
///
///     smoothd-bench generate PRESET PATH          write a benchmark shard
///     smoothd-bench generate-compressible GIB PATH   a repetitive float32 K=32000 shard of GIB GiB
///     smoothd-bench kernel DTYPE K [SECONDS]      single-thread kernel throughput in G logits/s
///     smoothd-bench evaluate PATH [THREADS]       in-process evaluation (no CLI), prints seconds
///     smoothd-bench small-k SECONDS K...          float32 M rows/s per K: before, now, before + accumulation, now + accumulation
///                                                  (the CPU's kernel variant, or SMOOTHD_KERNEL's; AVX2 for the baseline)
let presets: [String: SyntheticShard] = [
    // 1 GiB of float32 logits, one frame.
    "f32-k32000-1frame": SyntheticShard(numClasses: 32_000, rows: 8_192, dtype: .float32, rowsPerBlock: 64),
    // 1 GiB of bfloat16 logits in 8 frames that start at block boundaries.
    "bf16-k32000-8frames": SyntheticShard(numClasses: 32_000, rows: 16_384, dtype: .bfloat16, rowsPerBlock: 64, frames: 8),
    // 10 M rows of K = 10, in blocks of 65,536 rows.
    "f32-k10-10M": SyntheticShard(numClasses: 10, rows: 10_000_000, dtype: .float32, rowsPerBlock: 65_536),
    // 1 GiB of float32 with K = 256,000 (1 MiB rows).
    "f32-k256000": SyntheticShard(numClasses: 256_000, rows: 1_024, dtype: .float32, rowsPerBlock: 8),
    // Smaller shards for the bootstrap's cost per row (Benchmarks/bootstrap.py): 1 M rows of K = 10, 2,048 rows of K = 32,000.
    "f32-k10-1M": SyntheticShard(numClasses: 10, rows: 1_000_000, dtype: .float32, rowsPerBlock: 65_536),
    "f32-k32000-2048": SyntheticShard(numClasses: 32_000, rows: 2_048, dtype: .float32, rowsPerBlock: 64),
]

func usage() -> Never {
    FileHandle.standardError.write(Data("""
    usage: smoothd-bench generate \(presets.keys.sorted().joined(separator: "|")) PATH
           smoothd-bench generate-compressible GIB PATH   (97% ignored rows)
           smoothd-bench kernel float32|float16|bfloat16 K [SECONDS]
           smoothd-bench evaluate PATH [THREADS]
           smoothd-bench small-k SECONDS K...

    """.utf8))
    exit(64)
}

let arguments = Array(CommandLine.arguments.dropFirst())
guard let command = arguments.first else { usage() }
do {
    switch command {
    case "generate":
        guard arguments.count == 3, let preset = presets[arguments[1]] else { usage() }
        let size = try preset.write(to: arguments[2])
        print("\(arguments[2]): \(size) bytes compressed")
    case "generate-compressible":
        guard arguments.count == 3, let gib = Double(arguments[1]) else { usage() }
        let rows = Int(gib * Double(1 << 30)) / (32_000 * 4)
        var shard = SyntheticShard(numClasses: 32_000, rows: rows, dtype: .float32, rowsPerBlock: 64)
        shard.repetitive = true
        shard.level = 1
        // Mostly ignore_index rows: the point is the pipeline's memory, and debug-built tests use it too.
        shard.ignoredFraction = 0.97
        let size = try shard.write(to: arguments[2])
        print("\(arguments[2]): \(rows) rows, \(size) bytes compressed")
    case "kernel":
        guard arguments.count >= 3, let dtype = LogitDType.allCases.first(where: { $0.name == arguments[1] }),
              let k = Int(arguments[2]) else { usage() }
        let seconds = arguments.count > 3 ? Double(arguments[3]) ?? 2 : 2
        print(String(format: "%.3f", KernelBenchmark.run(dtype: dtype, numClasses: k, seconds: seconds)))
    case "small-k":
        guard arguments.count >= 3, let seconds = Double(arguments[1]) else { usage() }
        for text in arguments.dropFirst(2) {
            guard let k = Int(text), k >= 2 else { usage() }
            let r = SmallKBenchmark.run(numClasses: k, seconds: seconds)
            print(String(format: "%d %.2f %.2f %.2f %.2f", k, r.before, r.now, r.beforeChunk, r.nowChunk))
        }
    case "evaluate":
        guard arguments.count >= 2 else { usage() }
        let threads = arguments.count > 2 ? Int(arguments[2]) : nil
        let start = Date()
        let outcome = ShardEvaluator(options: EvaluationOptions(threads: threads)).evaluate(path: arguments[1])
        let elapsed = Date().timeIntervalSince(start)
        if case .failure(let failure) = outcome { throw BenchError("\(failure)") }
        print(String(format: "%.4f", elapsed))
    default:
        usage()
    }
} catch {
    FileHandle.standardError.write(Data("smoothd-bench: \(error)\n".utf8))
    exit(1)
}
