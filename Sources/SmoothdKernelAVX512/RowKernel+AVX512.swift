import SmoothdKernel

/// The row kernel compiled for AVX-512 (this module is built with `-target-cpu skylake-avx512`).
/// Call it only when `smoothd_cpu_has_avx512()` is true.
public enum RowKernelAVX512 {
    /// float32 rows.
    public static func evaluateFloat32(_ row: UnsafeRawPointer, _ k: Int, _ y: Int) -> RowStatistics {
        RowKernel.kernel(row, k, y, Float32Loader.self, FusedMultiplyAdd.self)
    }
    /// float16 rows.
    public static func evaluateFloat16(_ row: UnsafeRawPointer, _ k: Int, _ y: Int) -> RowStatistics {
        RowKernel.kernel(row, k, y, Float16Loader.self, FusedMultiplyAdd.self)
    }
    /// bfloat16 rows.
    public static func evaluateBFloat16(_ row: UnsafeRawPointer, _ k: Int, _ y: Int) -> RowStatistics {
        RowKernel.kernel(row, k, y, BFloat16Loader.self, FusedMultiplyAdd.self)
    }

    /// float32 batches.
    public static func evaluateRowsFloat32(_ rows: UnsafeRawPointer, _ k: Int, _ rowBytes: Int, _ labels: UnsafePointer<Int64>, _ count: Int, _ ignore: Int64, _ out: UnsafeMutablePointer<RowStatistics>) {
        RowKernel.evaluateRows(rows, k, rowBytes, labels, count, ignore, out, Float32Loader.self, FusedMultiplyAdd.self)
    }
    /// float16 batches.
    public static func evaluateRowsFloat16(_ rows: UnsafeRawPointer, _ k: Int, _ rowBytes: Int, _ labels: UnsafePointer<Int64>, _ count: Int, _ ignore: Int64, _ out: UnsafeMutablePointer<RowStatistics>) {
        RowKernel.evaluateRows(rows, k, rowBytes, labels, count, ignore, out, Float16Loader.self, FusedMultiplyAdd.self)
    }
    /// bfloat16 batches.
    public static func evaluateRowsBFloat16(_ rows: UnsafeRawPointer, _ k: Int, _ rowBytes: Int, _ labels: UnsafePointer<Int64>, _ count: Int, _ ignore: Int64, _ out: UnsafeMutablePointer<RowStatistics>) {
        RowKernel.evaluateRows(rows, k, rowBytes, labels, count, ignore, out, BFloat16Loader.self, FusedMultiplyAdd.self)
    }
}
