import SmoothdKernel

// Compiled twice like RowKernelVariant.swift (a symbolic link in SmoothdKernelAVX512): the temperature kernel
// specialised for this module's CPU target, with this module's fused multiply-add.

extension RowKernelVariant {
    /// float32 temperature batches.
    public static func evaluateTemperatureRowsFloat32(_ rows: UnsafeRawPointer, _ k: Int, _ rowBytes: Int, _ labels: UnsafePointer<Int64>, _ count: Int, _ ignore: Int64, _ betas: UnsafePointer<Double>, _ betaCount: Int, _ out: UnsafeMutablePointer<TemperatureRowStatistics>) {
        RowKernel.evaluateTemperatureRows(rows, k, rowBytes, labels, count, ignore, betas, betaCount, out, Float32Loader.self, ModuleFusedMultiplyAdd.self)
    }
    /// float16 temperature batches.
    public static func evaluateTemperatureRowsFloat16(_ rows: UnsafeRawPointer, _ k: Int, _ rowBytes: Int, _ labels: UnsafePointer<Int64>, _ count: Int, _ ignore: Int64, _ betas: UnsafePointer<Double>, _ betaCount: Int, _ out: UnsafeMutablePointer<TemperatureRowStatistics>) {
        RowKernel.evaluateTemperatureRows(rows, k, rowBytes, labels, count, ignore, betas, betaCount, out, Float16Loader.self, ModuleFusedMultiplyAdd.self)
    }
    /// bfloat16 temperature batches.
    public static func evaluateTemperatureRowsBFloat16(_ rows: UnsafeRawPointer, _ k: Int, _ rowBytes: Int, _ labels: UnsafePointer<Int64>, _ count: Int, _ ignore: Int64, _ betas: UnsafePointer<Double>, _ betaCount: Int, _ out: UnsafeMutablePointer<TemperatureRowStatistics>) {
        RowKernel.evaluateTemperatureRows(rows, k, rowBytes, labels, count, ignore, betas, betaCount, out, BFloat16Loader.self, ModuleFusedMultiplyAdd.self)
    }
}
