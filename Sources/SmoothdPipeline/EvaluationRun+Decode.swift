import Foundation
import LSHDFormat
import SmoothdMetrics
import Zstd

/// The parser state carried from one segment into the next: a reference, because the parser is
/// non-copyable and the cursor moves from the decoder that made it to the joining thread.
///
/// `@unchecked Sendable`: a cursor is used by one thread at a time. The decoder that creates it uses it
/// until it stores it in the run's shared state; only the joining thread takes it from there, after every
/// decoder thread has been joined (`JoinableThread.join` and the state's lock order the two).
final class SegmentCursor: @unchecked Sendable {
    var parser: ShardParser
    /// Payload offset and row index where this parser started; its errors are relative to them.
    var originBytes: UInt64
    var originRows: UInt64

    init(parser: consuming ShardParser, originBytes: UInt64, originRows: UInt64) {
        self.parser = parser
        self.originBytes = originBytes
        self.originRows = originRows
    }
}

/// How a segment's decoding ended.
enum SegmentEnd: Sendable {
    /// Between blocks: the next segment's guess (it starts at a block header) holds.
    case atBoundary
    /// Inside a block; the cursor continues into the next segment.
    case midBlock(SegmentCursor)
    /// After the end marker; the cursor rejects any byte that follows.
    case finished(SegmentCursor)
    /// Invalid, with the error relative to the cursor's origin.
    case failed(EvaluationError, SegmentCursor)
    /// Not decoded (a speculation was abandoned).
    case skipped
}

/// What decoding one segment produced (its rows' metrics go to the workers).
struct SegmentDecoding: Sendable {
    var end: SegmentEnd = .skipped
    var payloadBytes: UInt64 = 0
    var rows: UInt64 = 0
    /// The digest of the segment's labels, in file order.
    var labels = LabelDigest()
}

/// A segment's decoding and the metrics of its rows.
struct SegmentResult: Sendable {
    var decoded = SegmentDecoding()
    /// Rows are merged by workers under `generation`; a re-run bumps it and drops stale merges.
    var generation = 0
    var accumulator: MetricAccumulator
}

extension EvaluationRun {
    /// A decoding thread's compressed input and staging output.
    final class DecodeBuffers {
        let input = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)  // fewer reads than the recommended 128 KiB
        let output = UnsafeMutableRawBufferPointer.allocate(byteCount: ZstdDecompressor.recommendedOutputSize, alignment: 64)
        deinit {
            input.deallocate()
            output.deallocate()
        }
    }

    /// A cursor whose parser re-reads oversized label sections from the start of `segment`.
    func makeCursor(segment: Int, parser: consuming ShardParser, originBytes: UInt64, originRows: UInt64) -> SegmentCursor {
        parser.labelMemoryLimit = plan.labelMemoryLimit
        parser.labelReader = ForwardPayloadReader(fd: fd, compressedStart: plan.segments[segment].start, compressedEnd: fileSize,
                                                  windowLogMax: SegmentPlan.windowLogMax)
        return SegmentCursor(parser: parser, originBytes: originBytes, originRows: originRows)
    }

    /// Decodes segment `index` into `cursor`'s parser, handing rows to the workers.
    func decode(segment index: Int, cursor: SegmentCursor, decoder: ZstdDecompressor, buffers: DecodeBuffers, generation: Int) -> SegmentDecoding {
        decoder.reset()
        let segment = plan.segments[index]
        let isLast = index == plan.segments.count - 1
        let bytesBefore = cursor.parser.offset
        let rowsBefore = cursor.parser.rows
        var sink = ChunkSink(run: self, segment: index, generation: generation)
        func ended(_ end: SegmentEnd) -> SegmentDecoding {
            SegmentDecoding(end: end, payloadBytes: cursor.parser.offset - bytesBefore, rows: cursor.parser.rows - rowsBefore, labels: sink.labels)
        }
        do throws(ShardParseError) {
            var position = segment.start
            while position < segment.end {
                let want = Int(min(UInt64(buffers.input.count), segment.end - position))
                let got = pread(fd, buffers.input.baseAddress, want, off_t(position))
                if got < 0 {
                    if errno == EINTR { continue }
                    throw cursor.parser.stop(EvaluationError(.ioError, at: cursor.parser.offset, "read failed: \(errnoText())"), into: &sink)
                }
                if got == 0 {
                    throw cursor.parser.stop(EvaluationError(.ioError, at: cursor.parser.offset, "file shrank while being read"), into: &sink)
                }
                position += UInt64(got)
                progress?.add(got)
                try feed(count: got, cursor: cursor, sink: &sink, decoder: decoder, buffers: buffers)
                if index > 0 && generation == 0 && speculationAbandoned(before: index) {
                    cursor.parser.detach(from: &sink)
                    sink.submitCurrent()
                    return ended(.skipped)
                }
            }
            if isLast {
                if !decoder.isAtFrameBoundary {
                    throw cursor.parser.stop(EvaluationError(.format(.truncated), at: cursor.parser.offset,
                        "compressed stream ends inside a zstd frame (payload ends before the end marker)"), into: &sink)
                }
                do throws(ShardError) {
                    try cursor.parser.finish(into: &sink)
                } catch {
                    throw .invalid(error)
                }
            }
            cursor.parser.detach(from: &sink)
            sink.submitCurrent()
            if cursor.parser.isFinished { return ended(.finished(cursor)) }
            if cursor.parser.isAtBlockBoundary { return ended(.atBoundary) }
            return ended(.midBlock(cursor))
        } catch {
            // The parser has detached and put the first error in payload order first.
            sink.submitCurrent()
            return ended(.failed(EvaluationError(error), cursor))
        }
    }

    /// A speculative segment is dropped once speculation stopped because an earlier segment ended
    /// inside a block or failed (its own guess then cannot be trusted, or does not matter).
    func speculationAbandoned(before index: Int) -> Bool {
        shared.withLock { state in
            guard state.stopSpeculating else { return false }
            return state.results[0..<index].contains { result in
                switch result.decoded.end {
                case .midBlock, .failed: return true
                default: return false
                }
            }
        }
    }

    /// Runs the decoder over `count` input bytes and lets the parser take its output: inside a block's
    /// logits the decoder writes straight into the chunk (no staging copy).
    func feed(count: Int, cursor: SegmentCursor, sink: inout ChunkSink, decoder: ZstdDecompressor,
              buffers: DecodeBuffers) throws(ShardParseError) {
        let input = UnsafeRawBufferPointer(rebasing: buffers.input[0..<count])
        var inputPosition = 0
        while true {
            let hadHeader = cursor.parser.completeHeader != nil
            let offset = cursor.parser.offset  // not read inside: `fill` holds the parser
            let filled = try cursor.parser.fill(into: &sink, staging: buffers.output) { output throws(EvaluationError) in
                var outputPosition = 0
                do throws(ZstdError) {
                    try decoder.decompress(input: input, inputPosition: &inputPosition, output: output, outputPosition: &outputPosition)
                } catch {
                    throw EvaluationError(.zstdError, at: offset, "zstd: \(error.name)")
                }
                return outputPosition
            }
            // Read means through the metadata, which may end in a later call than the fixed header.
            if !hadHeader, let parsed = cursor.parser.completeHeader { publishHeader(parsed) }
            if inputPosition == count && !filled { return }
        }
    }
}

/// The parser's sink: fills pool chunks with rows and queues them for the workers.
struct ChunkSink: ShardRowSink {
    let run: EvaluationRun
    let segment: Int
    let generation: Int
    var current: RowChunk?
    /// Rows handed to chunks so far, and the digest of their labels.
    var rowsHanded: UInt64 = 0
    var labels = LabelDigest()

    init(run: EvaluationRun, segment: Int, generation: Int) {
        self.run = run
        self.segment = segment
        self.generation = generation
    }

    mutating func rowSpace(for header: ShardHeader) -> UnsafeMutableRawBufferPointer {
        if current == nil {
            run.publishHeader(header)
            let chunk = run.rowSetup.pool.take()!  // blocks while every chunk is in use: the backpressure
            chunk.segment = segment
            chunk.generation = generation
            chunk.firstRow = rowsHanded
            current = chunk
        }
        let chunk = current!
        return UnsafeMutableRawBufferPointer(rebasing: chunk.storage[(chunk.rowCount * chunk.rowBytes)..<chunk.rowCapacityBytes])
    }

    mutating func rowsFilled(labels: UnsafeBufferPointer<Int64>) {
        let chunk = current!
        chunk.labels.append(contentsOf: labels)
        chunk.rowCount += labels.count
        rowsHanded += UInt64(labels.count)
        self.labels.add(labels)
        if chunk.rowCount == chunk.capacityRows { submitCurrent() }
    }

    /// Queues the current chunk if it holds rows, or returns it to the pool.
    mutating func submitCurrent() {
        guard let chunk = current else { return }
        current = nil
        if chunk.rowCount > 0 { run.submit(chunk) } else { run.rowSetup.pool.put(chunk) }
    }
}
