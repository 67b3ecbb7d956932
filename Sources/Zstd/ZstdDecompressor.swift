import CZstd

/// A streaming zstd decoder over caller-owned buffers (`ZSTD_decompressStream`).
///
/// It accepts concatenated frames, skippable frames and frames without a content size.
/// Not thread-safe: one decoder belongs to one thread at a time.
public final class ZstdDecompressor {
    private let context: OpaquePointer
    /// True when the last call ended exactly at a frame boundary with everything flushed.
    public private(set) var isAtFrameBoundary = true

    /// The output size libzstd recommends: enough to flush one whole block.
    public static var recommendedOutputSize: Int { ZSTD_DStreamOutSize() }
    /// The input size libzstd recommends.
    public static var recommendedInputSize: Int { ZSTD_DStreamInSize() }

    /// Creates a decoder that refuses frames whose window exceeds `2^windowLogMax` bytes,
    /// so a hostile frame cannot make it allocate more than that.
    public init(windowLogMax: Int = 27) {
        guard let dctx = ZSTD_createDCtx() else { fatalError("ZSTD_createDCtx failed: out of memory") }
        context = dctx
        _ = ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, Int32(windowLogMax))
    }

    deinit { ZSTD_freeDCtx(context) }

    /// Forgets any partial frame, so the decoder can start on a new stream.
    public func reset() {
        _ = ZSTD_DCtx_reset(context, ZSTD_reset_session_only)
        isAtFrameBoundary = true
    }

    /// Decodes from `input[inputPosition...]` into `output[outputPosition...]`, advancing both positions.
    /// Returns when the output is full, the input is used up, or a frame ends.
    public func decompress(
        input: UnsafeRawBufferPointer, inputPosition: inout Int,
        output: UnsafeMutableRawBufferPointer, outputPosition: inout Int
    ) throws(ZstdError) {
        var inBuffer = ZSTD_inBuffer(src: input.baseAddress, size: input.count, pos: inputPosition)
        var outBuffer = ZSTD_outBuffer(dst: output.baseAddress, size: output.count, pos: outputPosition)
        let result = ZSTD_decompressStream(context, &outBuffer, &inBuffer)
        inputPosition = inBuffer.pos
        outputPosition = outBuffer.pos
        _ = try ZstdError.check(result)
        isAtFrameBoundary = (result == 0)
    }
}
