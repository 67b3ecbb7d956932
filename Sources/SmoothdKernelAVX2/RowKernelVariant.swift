import SmoothdKernel

// This file is compiled twice: here (for AVX2 + FMA, `-target-cpu haswell`) and, through a symbolic
// link, in SmoothdKernelAVX512 (`-target-cpu skylake-avx512`). The generic kernel is @inlinable, so each
// module specialises it for its own CPU. `KernelVariant` (SmoothdMetrics) calls these only on CPUs
// that have the features.

/// Fused multiply-add, one instruction on this module's CPU target. Declared here, in each CPU-specific
/// module, so the kernel's specialisations carry this module's name (see `MultiplyAdd`).
public enum ModuleFusedMultiplyAdd: MultiplyAdd {
    @inlinable @inline(__always) public static func multiplyAdd(_ a: Lanes, _ b: Lanes, _ c: Lanes) -> Lanes { c.addingProduct(a, b) }
}

/// The row kernel compiled for this module's CPU target.
public enum RowKernelVariant {
    /// float32 rows.
    public static func evaluateFloat32(_ row: UnsafeRawPointer, _ k: Int, _ y: Int) -> RowStatistics {
        RowKernel.evaluateRow(row, k, y, Float32Loader.self, ModuleFusedMultiplyAdd.self)
    }
    /// float16 rows.
    public static func evaluateFloat16(_ row: UnsafeRawPointer, _ k: Int, _ y: Int) -> RowStatistics {
        RowKernel.evaluateRow(row, k, y, Float16Loader.self, ModuleFusedMultiplyAdd.self)
    }
    /// bfloat16 rows.
    public static func evaluateBFloat16(_ row: UnsafeRawPointer, _ k: Int, _ y: Int) -> RowStatistics {
        RowKernel.evaluateRow(row, k, y, BFloat16Loader.self, ModuleFusedMultiplyAdd.self)
    }
    /// float32 batches.
    public static func evaluateRowsFloat32(_ rows: UnsafeRawPointer, _ k: Int, _ rowBytes: Int, _ labels: UnsafePointer<Int64>, _ count: Int, _ ignore: Int64, _ out: UnsafeMutablePointer<RowStatistics>) {
        RowKernel.evaluateRows(rows, k, rowBytes, labels, count, ignore, out, Float32Loader.self, ModuleFusedMultiplyAdd.self)
    }
    /// float16 batches.
    public static func evaluateRowsFloat16(_ rows: UnsafeRawPointer, _ k: Int, _ rowBytes: Int, _ labels: UnsafePointer<Int64>, _ count: Int, _ ignore: Int64, _ out: UnsafeMutablePointer<RowStatistics>) {
        RowKernel.evaluateRows(rows, k, rowBytes, labels, count, ignore, out, Float16Loader.self, ModuleFusedMultiplyAdd.self)
    }
    /// bfloat16 batches.
    public static func evaluateRowsBFloat16(_ rows: UnsafeRawPointer, _ k: Int, _ rowBytes: Int, _ labels: UnsafePointer<Int64>, _ count: Int, _ ignore: Int64, _ out: UnsafeMutablePointer<RowStatistics>) {
        RowKernel.evaluateRows(rows, k, rowBytes, labels, count, ignore, out, BFloat16Loader.self, ModuleFusedMultiplyAdd.self)
    }
    /// float32 batches row by row through `RowKernel.kernel` whatever K is: what every K ran before the lanes
    /// kernel, kept so that `smoothd-bench small-k` can time the two side by side.
    public static func evaluateRowsFloat32RowByRow(_ rows: UnsafeRawPointer, _ k: Int, _ rowBytes: Int, _ labels: UnsafePointer<Int64>, _ count: Int, _ ignore: Int64, _ out: UnsafeMutablePointer<RowStatistics>) {
        for r in 0..<count where labels[r] != ignore {
            out[r] = RowKernel.kernel(rows + r &* rowBytes, k, Int(labels[r]), Float32Loader.self, ModuleFusedMultiplyAdd.self)
        }
    }
}
