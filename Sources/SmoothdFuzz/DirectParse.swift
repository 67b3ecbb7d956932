#if canImport(Glibc)
import Glibc
#endif
import LSHDFormat
import SmoothdMetrics

/// The oracle for the pipeline: the same payload parsed on one thread with `ShardParser` alone, fed
/// in pieces of a chosen size, into a sink that runs the row kernel and `MetricAccumulator` on each
/// batch of rows. It uses the parser the way `EvaluationRun` does (`fill`, label reader, `detach`,
/// `finish`), but shares nothing else with the pipeline.
enum DirectParse {
    /// How a payload ended: valid with its header and exact metric state, or its first error.
    enum Result {
        case valid(header: ShardHeader, accumulator: MetricAccumulator, payloadBytes: UInt64)
        case invalid(ShardError, consumed: UInt64)
    }

    /// Parses `payload` with `pieceSize`-byte writes, `rowsPerSpace` rows per sink space, labels kept in
    /// memory up to `labelMemoryLimit` bytes per block (beyond that re-read from the payload), and a
    /// `detach` after every piece when `detach` is set (as at the end of a pipeline segment).
    static func run(_ payload: [UInt8], metrics: MetricOptions, pieceSize: Int, rowsPerSpace: Int,
                    labelMemoryLimit: Int, detach: Bool) -> Result {
        var parser = ShardParser()
        parser.labelReader = MemoryPayloadReader(payload)
        parser.labelMemoryLimit = labelMemoryLimit
        var sink = DirectSink(metrics: metrics, rowsPerSpace: rowsPerSpace)
        var failure: ShardError?
        let staging = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, min(pieceSize, payload.count)), alignment: 16)
        defer { staging.deallocate() }
        payload.withUnsafeBytes { raw in
            var index = 0
            do throws(ShardParseError) {
                while index < raw.count {
                    let count = min(pieceSize, raw.count - index)
                    var piece = UnsafeRawBufferPointer(rebasing: raw[index..<(index + count)])
                    index += count
                    // One piece may take several fills: the parser's space can be smaller than it.
                    while !piece.isEmpty {
                        _ = try parser.fill(into: &sink, staging: staging) { space in
                            let take = min(space.count, piece.count)
                            space.baseAddress!.copyMemory(from: piece.baseAddress!, byteCount: take)
                            piece = UnsafeRawBufferPointer(rebasing: piece[take...])
                            return take
                        }
                    }
                    if detach { parser.detach(from: &sink) }
                }
                do throws(ShardError) { try parser.finish(into: &sink) } catch { throw .invalid(error) }
            } catch {
                switch error {
                case .invalid(let invalid): failure = invalid
                case .sourceFailed(let other): violated("the memory reader failed: \(other)")
                }
            }
        }
        parser.detach(from: &sink)
        if let failure { return .invalid(failure, consumed: parser.offset) }
        guard let header = parser.header else { violated("direct parse finished without a header") }
        require(parser.isFinished, "direct parse succeeded without reading the end marker")
        require(parser.offset == UInt64(payload.count), "direct parse consumed \(parser.offset) of \(payload.count) bytes")
        require(parser.rows == sink.accumulator.rows, "parser counted \(parser.rows) rows, the sink \(sink.accumulator.rows)")
        return .valid(header: header, accumulator: sink.accumulator, payloadBytes: parser.offset)
    }
}

/// `PayloadRangeReader` over a payload held in memory.
final class MemoryPayloadReader: PayloadRangeReader {
    let payload: [UInt8]
    init(_ payload: [UInt8]) { self.payload = payload }

    func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) -> Int {
        guard offset < UInt64(payload.count), buffer.count > 0 else { return 0 }
        let count = min(buffer.count, payload.count - Int(offset))
        payload.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + Int(offset), byteCount: count) }
        return count
    }
}

/// Row storage for `DirectSink`, with the kernel's read slack after the last row.
final class RowBuffer {
    let rows: UnsafeMutableRawBufferPointer
    let rowBytes: Int
    let capacityRows: Int
    let statistics: UnsafeMutablePointer<RowStatistics>

    init(rowBytes: Int, capacityRows: Int) {
        self.rowBytes = rowBytes
        self.capacityRows = capacityRows
        rows = .allocate(byteCount: rowBytes * capacityRows + RowKernel.readSlack, alignment: 64)
        statistics = .allocate(capacity: capacityRows)
    }

    deinit {
        rows.deallocate()
        statistics.deallocate()
    }
}

/// A sink that evaluates rows as soon as the parser hands them over.
struct DirectSink: ShardRowSink {
    let metrics: MetricOptions
    let rowsPerSpace: Int
    var accumulator: MetricAccumulator
    var header: ShardHeader?
    var buffer: RowBuffer?
    var kernel: RowKernel.BatchFunction?
    /// True between `rowSpace` and `rowsFilled`.
    var spaceOut = false

    init(metrics: MetricOptions, rowsPerSpace: Int) {
        self.metrics = metrics
        self.rowsPerSpace = rowsPerSpace
        accumulator = MetricAccumulator(options: metrics)
    }

    mutating func rowSpace(for header: ShardHeader) -> UnsafeMutableRawBufferPointer {
        if let known = self.header {
            require(known == header, "the parser changed its header between spaces")
        } else {
            self.header = header
            // At most ~1 MiB of rows per space, never less than one row (a row may be 64 MiB at K = 2^24).
            let capacity = max(1, min(rowsPerSpace, (1 << 20) / header.rowLogitBytes))
            buffer = RowBuffer(rowBytes: header.rowLogitBytes, capacityRows: capacity)
            kernel = KernelVariant.current.batchFunction(for: header.logitDType)
        }
        spaceOut = true
        let buffer = buffer!
        return UnsafeMutableRawBufferPointer(rebasing: buffer.rows[0..<(buffer.rowBytes * buffer.capacityRows)])
    }

    mutating func rowsFilled(labels: UnsafeBufferPointer<Int64>) {
        guard let header, let buffer, let kernel else { violated("rows filled before any space was handed out") }
        require(spaceOut, "rows filled twice for one space")
        require(labels.count >= 1 && labels.count <= buffer.capacityRows,
                "\(labels.count) rows filled into a space of \(buffer.capacityRows)")
        spaceOut = false
        for label in labels where label != header.ignoreIndex {
            // The kernel reads z[label]: the parser must never hand over a label outside [0, K).
            require(label >= 0 && label < Int64(header.numClasses), "label \(label) reached the kernel with K = \(header.numClasses)")
        }
        kernel(UnsafeRawPointer(buffer.rows.baseAddress!), header.numClasses, buffer.rowBytes, labels.baseAddress!,
               labels.count, header.ignoreIndex, buffer.statistics)
        for r in 0..<labels.count {
            if labels[r] == header.ignoreIndex { accumulator.addIgnoredRow() } else { accumulator.add(buffer.statistics[r]) }
        }
    }
}
