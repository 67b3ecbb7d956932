import Foundation
import LSHDFormat
import Zstd

/// A second, independent decoder over the same file that serves `ShardParser.labelReader`: it
/// decodes from a segment's first frame and skips forward to each requested offset. A block whose
/// labels do not fit in memory thus costs one more decoding pass over the payload, not memory.
///
/// Owned by one parser, hence by one thread at a time.
final class ForwardPayloadReader: PayloadRangeReader {
    let fd: Int32
    let compressedStart: UInt64
    let compressedEnd: UInt64
    let windowLogMax: Int
    private var decoder: ZstdDecompressor
    private var input = [UInt8](repeating: 0, count: 64 << 10)
    private var inputCount = 0
    private var inputPosition = 0
    private var output = [UInt8](repeating: 0, count: 64 << 10)
    private var outputStart = 0
    private var outputEnd = 0
    /// Payload offset (from the segment start) of `output[outputStart]`.
    private var payloadPosition: UInt64 = 0
    private var compressedPosition: UInt64

    init(fd: Int32, compressedStart: UInt64, compressedEnd: UInt64, windowLogMax: Int) {
        self.fd = fd
        self.compressedStart = compressedStart
        self.compressedEnd = compressedEnd
        self.windowLogMax = windowLogMax
        decoder = ZstdDecompressor(windowLogMax: windowLogMax)
        compressedPosition = compressedStart
    }

    func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(EvaluationError) -> Int {
        if offset < payloadPosition { restart() }
        var filled = 0
        while filled < buffer.count {
            if outputStart == outputEnd {
                guard try refill() else { break }
                continue
            }
            let available = outputEnd - outputStart
            if payloadPosition < offset {
                let skip = Int(min(UInt64(available), offset - payloadPosition))
                outputStart += skip
                payloadPosition += UInt64(skip)
                continue
            }
            let take = min(available, buffer.count - filled)
            output.withUnsafeBytes { (buffer.baseAddress! + filled).copyMemory(from: $0.baseAddress! + outputStart, byteCount: take) }
            outputStart += take
            payloadPosition += UInt64(take)
            filled += take
        }
        return filled
    }

    private func restart() {
        decoder = ZstdDecompressor(windowLogMax: windowLogMax)
        inputCount = 0
        inputPosition = 0
        outputStart = 0
        outputEnd = 0
        payloadPosition = 0
        compressedPosition = compressedStart
    }

    /// Decodes more output; false at the end of the file.
    private func refill() throws(EvaluationError) -> Bool {
        while true {
            if inputPosition == inputCount {
                guard compressedPosition < compressedEnd else { return false }
                let want = Int(min(UInt64(input.count), compressedEnd - compressedPosition))
                let got = input.withUnsafeMutableBytes { pread(fd, $0.baseAddress, want, off_t(compressedPosition)) }
                if got < 0, errno == EINTR { continue }
                guard got > 0 else { throw EvaluationError(.ioError, at: payloadPosition, "read failed while re-reading labels: \(errnoText())") }
                compressedPosition += UInt64(got)
                inputCount = got
                inputPosition = 0
            }
            var produced = 0
            let failure = input.withUnsafeBytes { inBuffer -> ZstdError? in
                output.withUnsafeMutableBytes { outBuffer -> ZstdError? in
                    do throws(ZstdError) {
                        try decoder.decompress(input: UnsafeRawBufferPointer(rebasing: inBuffer[0..<inputCount]), inputPosition: &inputPosition,
                                               output: outBuffer, outputPosition: &produced)
                        return nil
                    } catch {
                        return error
                    }
                }
            }
            if let failure { throw EvaluationError(.zstdError, at: payloadPosition, "zstd: \(failure.name)") }
            if produced > 0 {
                outputStart = 0
                outputEnd = produced
                return true
            }
        }
    }
}
