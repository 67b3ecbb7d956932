import LSHDFormat
import SmoothdKernel
#if arch(x86_64)
import SmoothdKernelAVX2
import SmoothdKernelAVX512
#endif

extension KernelVariant {
    /// The temperature batch kernel for `dtype` in this variant. It may read `RowKernel.readSlack` bytes past the last row.
    public func temperatureBatchFunction(for dtype: LogitDType) -> RowKernel.TemperatureBatchFunction {
        switch self {
        #if arch(x86_64)
        case .avx512:
            return KernelVariant.pick(dtype, SmoothdKernelAVX512.RowKernelVariant.evaluateTemperatureRowsFloat32,
                                      SmoothdKernelAVX512.RowKernelVariant.evaluateTemperatureRowsFloat16,
                                      SmoothdKernelAVX512.RowKernelVariant.evaluateTemperatureRowsBFloat16)
        case .avx2:
            return KernelVariant.pick(dtype, SmoothdKernelAVX2.RowKernelVariant.evaluateTemperatureRowsFloat32,
                                      SmoothdKernelAVX2.RowKernelVariant.evaluateTemperatureRowsFloat16,
                                      SmoothdKernelAVX2.RowKernelVariant.evaluateTemperatureRowsBFloat16)
        #endif
        default:
            return KernelVariant.pick(dtype, RowKernel.evaluateTemperatureRowsFloat32, RowKernel.evaluateTemperatureRowsFloat16,
                                      RowKernel.evaluateTemperatureRowsBFloat16)
        }
    }

    /// One of a variant's three kernels by dtype.
    private static func pick(_ dtype: LogitDType, _ float32: @escaping RowKernel.TemperatureBatchFunction,
                             _ float16: @escaping RowKernel.TemperatureBatchFunction,
                             _ bfloat16: @escaping RowKernel.TemperatureBatchFunction) -> RowKernel.TemperatureBatchFunction {
        switch dtype {
        case .float32: return float32
        case .float16: return float16
        case .bfloat16: return bfloat16
        }
    }
}
