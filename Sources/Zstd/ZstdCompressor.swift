import CZstd

/// A streaming zstd encoder (`ZSTD_compressStream2`) that writes frames with a content checksum.
///
/// Used by the shard writer and the benchmark generator. Not thread-safe.
public final class ZstdCompressor {
    private let context: OpaquePointer
    private var output: [UInt8]

    /// Creates a single-threaded encoder at `level`, writing a content checksum unless `checksum` is false.
    public init(level: Int32 = 3, checksum: Bool = true) {
        guard let cctx = ZSTD_createCCtx() else { fatalError("ZSTD_createCCtx failed: out of memory") }
        context = cctx
        _ = ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level)
        _ = ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, checksum ? 1 : 0)
        output = [UInt8](repeating: 0, count: ZSTD_CStreamOutSize())
    }

    deinit { ZSTD_freeCCtx(context) }

    /// Declares the exact size of the next frame, so its header carries the content size.
    public func pledgeFrameSize(_ size: UInt64) throws(ZstdError) {
        _ = try ZstdError.check(ZSTD_CCtx_setPledgedSrcSize(context, size))
    }

    /// Compresses `bytes` into the current frame, handing compressed output to `sink`.
    public func write(_ bytes: UnsafeRawBufferPointer, to sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        try run(bytes, directive: ZSTD_e_continue, sink: sink)
    }

    /// Ends the current frame (the next write starts a new one).
    public func endFrame(to sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        try run(UnsafeRawBufferPointer(start: nil, count: 0), directive: ZSTD_e_end, sink: sink)
    }

    private func run(_ bytes: UnsafeRawBufferPointer, directive: ZSTD_EndDirective, sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        var input = ZSTD_inBuffer(src: bytes.baseAddress, size: bytes.count, pos: 0)
        while true {
            let (result, produced): (Int, Int) = output.withUnsafeMutableBytes { out in
                var outBuffer = ZSTD_outBuffer(dst: out.baseAddress, size: out.count, pos: 0)
                let r = ZSTD_compressStream2(context, &outBuffer, &input, directive)
                return (r, outBuffer.pos)
            }
            let remaining = try ZstdError.check(result)
            if produced > 0 { try output.withUnsafeBytes { try sink(UnsafeRawBufferPointer(rebasing: $0[0..<produced])) } }
            let done = directive == ZSTD_e_end ? remaining == 0 : input.pos == input.size
            if done { return }
        }
    }

    /// Compresses `bytes` as one whole frame.
    public static func compressFrame(_ bytes: [UInt8], level: Int32 = 3) throws -> [UInt8] {
        let encoder = ZstdCompressor(level: level)
        try encoder.pledgeFrameSize(UInt64(bytes.count))
        var out: [UInt8] = []
        try bytes.withUnsafeBytes { try encoder.write($0) { out.append(contentsOf: $0) } }
        try encoder.endFrame { out.append(contentsOf: $0) }
        return out
    }
}
