import SmoothdKernel

/// The row kernel compiled for AVX2 (this module is built with `-target-cpu haswell`).
/// Call it only when `CPUFeatures.hasAVX2` is true.
public enum RowKernelAVX2 {
    /// float32 rows.
    public static func evaluateFloat32(_ row: UnsafeRawPointer, _ k: Int, _ y: Int) -> RowStatistics {
        RowKernel.kernel(row, k, y, Float32Loader.self)
    }
    /// float16 rows.
    public static func evaluateFloat16(_ row: UnsafeRawPointer, _ k: Int, _ y: Int) -> RowStatistics {
        RowKernel.kernel(row, k, y, Float16Loader.self)
    }
    /// bfloat16 rows.
    public static func evaluateBFloat16(_ row: UnsafeRawPointer, _ k: Int, _ y: Int) -> RowStatistics {
        RowKernel.kernel(row, k, y, BFloat16Loader.self)
    }
}
