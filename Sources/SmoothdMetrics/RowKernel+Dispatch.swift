import CCPUFeatures
#if canImport(Glibc)
import Glibc
#endif
import LSHDFormat
@_exported import SmoothdKernel
#if arch(x86_64)
import SmoothdKernelAVX2
import SmoothdKernelAVX512
#endif

/// Which kernel variant runs, chosen once from the CPU at start-up.
public enum KernelVariant: String, Sendable {
    /// SSE2, the x86-64 baseline (or the generic build elsewhere).
    case baseline
    /// AVX2 with FMA, for CPUs that have it.
    case avx2
    /// AVX-512 (F, BW, DQ, VL), for CPUs that have it.
    case avx512

    /// Variants this CPU can run, best first.
    public static let supported: [KernelVariant] = {
        #if arch(x86_64)
        return (smoothd_cpu_has_avx512() != 0 ? [.avx512] : []) + (smoothd_cpu_has_avx2() != 0 ? [.avx2] : []) + [.baseline]
        #else
        return [.baseline]
        #endif
    }()

    /// The variant this process uses: the best supported one, or `SMOOTHD_KERNEL=baseline|avx2|avx512`
    /// when that is supported (for tests and benchmarks).
    public static let current: KernelVariant = {
        if let forced = getenv("SMOOTHD_KERNEL").flatMap({ KernelVariant(rawValue: String(cString: $0)) }), supported.contains(forced) {
            return forced
        }
        return supported[0]
    }()

    /// The kernel for `dtype` in this variant. It may read `RowKernel.readSlack` bytes past the row.
    public func function(for dtype: LogitDType) -> RowKernel.Function { kernels(for: dtype).row }

    /// The batch kernel for `dtype` in this variant. It may read `RowKernel.readSlack` bytes past the last row.
    public func batchFunction(for dtype: LogitDType) -> RowKernel.BatchFunction { kernels(for: dtype).batch }

    /// Both kernels for `dtype`, from one table, so that a variant or dtype is added in one place.
    func kernels(for dtype: LogitDType) -> (row: RowKernel.Function, batch: RowKernel.BatchFunction) {
        #if arch(x86_64)
        typealias AVX512 = SmoothdKernelAVX512.RowKernelVariant
        typealias AVX2 = SmoothdKernelAVX2.RowKernelVariant
        #endif
        switch (self, dtype) {
        #if arch(x86_64)
        case (.avx512, .float32): return (AVX512.evaluateFloat32, AVX512.evaluateRowsFloat32)
        case (.avx512, .float16): return (AVX512.evaluateFloat16, AVX512.evaluateRowsFloat16)
        case (.avx512, .bfloat16): return (AVX512.evaluateBFloat16, AVX512.evaluateRowsBFloat16)
        case (.avx2, .float32): return (AVX2.evaluateFloat32, AVX2.evaluateRowsFloat32)
        case (.avx2, .float16): return (AVX2.evaluateFloat16, AVX2.evaluateRowsFloat16)
        case (.avx2, .bfloat16): return (AVX2.evaluateBFloat16, AVX2.evaluateRowsBFloat16)
        #endif
        case (_, .float32): return (RowKernel.evaluateFloat32, RowKernel.evaluateRowsFloat32)
        case (_, .float16): return (RowKernel.evaluateFloat16, RowKernel.evaluateRowsFloat16)
        case (_, .bfloat16): return (RowKernel.evaluateBFloat16, RowKernel.evaluateRowsBFloat16)
        }
    }
}

extension RowKernel {
    /// Evaluates one row stored in `dtype` with the CPU's best variant; `label` must be in [0, numClasses).
    /// Unlike the raw kernel functions it needs no readable slack after the row (it copies the row).
    public static func evaluate(row: UnsafeRawPointer, dtype: LogitDType, numClasses: Int, label: Int) -> RowStatistics {
        let bytes = numClasses * dtype.byteWidth
        let padded = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes + readSlack, alignment: 64)
        defer { padded.deallocate() }
        padded.baseAddress!.copyMemory(from: row, byteCount: bytes)
        return KernelVariant.current.function(for: dtype)(padded.baseAddress!, numClasses, label)
    }
}
