import Foundation
import LSHDFormat
import SmoothdMetrics
import Synchronization
import Zstd

/// A byte range of the compressed file made of whole zstd frames, decoded by one thread.
struct Segment {
    var start: UInt64
    var end: UInt64
}

/// The parser state carried from one segment into the next: a reference, because the parser is
/// non-copyable and the cursor moves from the decoder that made it to the joining thread.
final class SegmentCursor {
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
enum SegmentEnd {
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

/// What one segment produced.
struct SegmentResult {
    var end: SegmentEnd = .skipped
    var payloadBytes: UInt64 = 0
    var rows: UInt64 = 0
    /// Rows are merged by workers under `generation`; a re-run bumps it and drops stale merges.
    var generation = 0
    var accumulator: MetricAccumulator
}

struct RunFailure: Error {
    var error: EvaluationError
    var payloadBytes: UInt64
}

/// One evaluation of one file, shared by its decoder and worker threads.
///
/// `@unchecked Sendable`: `segments` and `frameCount` are written by `planSegments` before any thread
/// starts and only read afterwards (thread start orders them); `header`, `kernel`, `pool`, `results`,
/// `nextSegment`, `headerFailed` and `stopSpeculating` are read and written only while holding `lock`;
/// `work` and the pool are `BlockingQueue`s, which synchronise themselves.
final class EvaluationRun: @unchecked Sendable {
    let fd: Int32
    let fileSize: UInt64
    let options: EvaluationOptions
    let progress: ProgressCounter?
    private(set) var frameCount = 0

    private let lock = NSCondition()
    private var header: ShardHeader?
    private var headerFailed = false
    private var results: [SegmentResult] = []
    private var segments: [Segment] = []
    private var nextSegment = 0
    /// Set when speculation stops paying off (a segment ended mid-block) or a segment failed.
    private var stopSpeculating = false

    private var pool: BlockingQueue<RowChunk>!
    private let work = BlockingQueue<RowChunk>()
    private var kernel: RowKernel.BatchFunction?

    init(fd: Int32, fileSize: UInt64, options: EvaluationOptions, progress: ProgressCounter?) {
        self.fd = fd
        self.fileSize = fileSize
        self.options = options
        self.progress = progress
    }

    // MARK: - Plan

    /// Splits the file into frame groups: about four per thread, each at least 1 MiB compressed.
    func planSegments() {
        guard let frames = ZstdFrameIndex.scan(fileDescriptor: fd, size: fileSize), !frames.isEmpty else {
            frameCount = 1
            segments = [Segment(start: 0, end: fileSize)]
            return
        }
        frameCount = frames.count
        let threads = options.threads
        guard threads > 1 else {
            segments = [Segment(start: 0, end: fileSize)]
            return
        }
        let target = options.segmentTargetBytes.map { UInt64(max(1, $0)) } ?? max(UInt64(1 << 20), fileSize / UInt64(4 * threads))
        var current = Segment(start: 0, end: 0)
        for frame in frames {
            current.end = frame.offset + frame.compressedSize
            if current.end - current.start >= target {
                segments.append(current)
                current = Segment(start: current.end, end: current.end)
            }
        }
        if current.end > current.start || segments.isEmpty { segments.append(current) }
        segments[segments.count - 1].end = fileSize
    }

    var decoderCount: Int { min(options.threads, segments.count) }

    /// Labels of a block beyond this many bytes are re-read in windows instead of kept:
    /// a sixteenth of the budget, at most 4 MiB.
    var labelMemoryLimit: Int { min(4 << 20, options.memoryBudget / 16) }

    /// A cursor whose parser re-reads oversized label sections from the start of `segment`.
    func makeCursor(segment: Int, parser: consuming ShardParser, originBytes: UInt64, originRows: UInt64) -> SegmentCursor {
        parser.labelMemoryLimit = labelMemoryLimit
        parser.labelReader = ForwardPayloadReader(fd: fd, compressedStart: segments[segment].start, compressedEnd: fileSize,
                                                  windowLogMax: windowLogMax)
        return SegmentCursor(parser: parser, originBytes: originBytes, originRows: originRows)
    }

    /// zstd window limit: 8 MiB (levels 1–19 need no more; the zstd format asks decoders for at least
    /// that). Fixed, not scaled with the budget or the thread count: a frame with a larger window (zstd
    /// --long, --ultra on big inputs) is rejected under every setting, so results never depend on them.
    var windowLogMax: Int { 23 }

    /// Creates the chunk pool once the row size is known: 2 chunks per worker and per decoder, each at
    /// most 2 MiB (larger chunks only cost memory) and together within what the budget leaves after zstd's buffers; never less than one row each.
    func makePool(rowBytes: Int) -> BlockingQueue<RowChunk> {
        let chunkCount = 2 * options.threads + 2 * decoderCount
        let zstdReserve = decoderCount * (2 * ZstdDecompressor.recommendedOutputSize + (1 << min(windowLogMax, 23)))
        let forChunks = max(0, options.memoryBudget - zstdReserve)
        let perChunk = min(2 << 20, forChunks / chunkCount)
        let rowsPerChunk = max(1, perChunk / rowBytes)
        let count = rowsPerChunk == 1 ? max(2, min(chunkCount, forChunks / rowBytes)) : chunkCount
        return BlockingQueue((0..<count).map { _ in RowChunk(rowBytes: rowBytes, capacityRows: rowsPerChunk) })
    }

    // MARK: - Run

    func execute() -> Result<(ShardHeader, MetricAccumulator, UInt64), RunFailure> {
        planSegments()
        results = segments.map { _ in SegmentResult(accumulator: MetricAccumulator(options: options.metrics)) }
        let workers = (0..<options.threads).map { i in JoinableThread(name: "smoothd-worker-\(i)") { self.workerLoop() } }
        let decoders = (0..<decoderCount).map { i in JoinableThread(name: "smoothd-decoder-\(i)") { self.decoderLoop() } }
        decoders.forEach { $0.join() }
        let outcome = joinSegments()
        work.close()
        workers.forEach { $0.join() }
        switch outcome {
        case .failure(let failure): return .failure(failure)
        case .success(let payloadBytes):
            var total = MetricAccumulator(options: options.metrics)
            lock.lock()
            for result in results { total.merge(result.accumulator) }
            let header = self.header!
            lock.unlock()
            return .success((header, total, payloadBytes))
        }
    }

    /// Decoder threads take segments in order; segment 0 is exact, later ones guess a block boundary.
    func decoderLoop() {
        let decoder = ZstdDecompressor(windowLogMax: windowLogMax)
        let buffers = DecodeBuffers()
        while true {
            lock.lock()
            let index = nextSegment
            let proceed = index < segments.count && (index == 0 || !stopSpeculating)
            if proceed { nextSegment += 1 }
            lock.unlock()
            guard proceed else { return }
            let cursor: SegmentCursor
            if index == 0 {
                cursor = makeCursor(segment: 0, parser: ShardParser(), originBytes: 0, originRows: 0)
            } else {
                guard let header = waitForHeader() else { return }
                cursor = makeCursor(segment: index, parser: ShardParser(resumingAtBlockBoundaryWith: header), originBytes: 0, originRows: 0)
            }
            let result = decode(segment: index, cursor: cursor, decoder: decoder, buffers: buffers, generation: 0)
            lock.lock()
            results[index].end = result.end
            results[index].payloadBytes = result.payloadBytes
            results[index].rows = result.rows
            switch result.end {
            case .atBoundary, .finished: break
            case .midBlock, .failed, .skipped: stopSpeculating = true
            }
            if index == 0, header == nil { headerFailed = true }
            lock.broadcast()
            lock.unlock()
        }
    }

    func waitForHeader() -> ShardHeader? {
        lock.lock()
        defer { lock.unlock() }
        while header == nil && !headerFailed { lock.wait() }
        return header
    }

    func publishHeader(_ parsed: ShardHeader) {
        lock.lock()
        if header == nil {
            header = parsed
            kernel = KernelVariant.current.batchFunction(for: parsed.logitDType)
            pool = makePool(rowBytes: parsed.rowLogitBytes)
            lock.broadcast()
        }
        lock.unlock()
    }

    func workerLoop() {
        while let chunk = work.take() {
            lock.lock()
            let header = self.header!, kernel = self.kernel!
            lock.unlock()
            let partial = chunk.evaluate(header: header, options: options.metrics, kernel: kernel)
            lock.lock()
            if results[chunk.segment].generation == chunk.generation {
                results[chunk.segment].accumulator.merge(partial)
            }
            lock.unlock()
            chunk.reset()
            pool.put(chunk)
        }
    }

    func chunkPool() -> BlockingQueue<RowChunk> {
        lock.lock()
        defer { lock.unlock() }
        return pool
    }

    // MARK: - Decoding one segment

    /// A decoding thread's compressed input and staging output.
    final class DecodeBuffers {
        let input = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 64)  // fewer reads than the recommended 128 KiB
        let output = UnsafeMutableRawBufferPointer.allocate(byteCount: ZstdDecompressor.recommendedOutputSize, alignment: 64)
        deinit {
            input.deallocate()
            output.deallocate()
        }
    }

    /// Decodes segment `index` into `cursor`'s parser, handing rows to the workers.
    func decode(segment index: Int, cursor: SegmentCursor, decoder: ZstdDecompressor, buffers: DecodeBuffers, generation: Int) -> SegmentResult {
        decoder.reset()
        let segment = segments[index]
        let isLast = index == segments.count - 1
        let bytesBefore = cursor.parser.offset
        let rowsBefore = cursor.parser.rows
        var sink = ChunkSink(run: self, segment: index, generation: generation)
        var result = SegmentResult(accumulator: MetricAccumulator(options: options.metrics))
        func finish(_ end: SegmentEnd) -> SegmentResult {
            result.end = end
            result.payloadBytes = cursor.parser.offset - bytesBefore
            result.rows = cursor.parser.rows - rowsBefore
            return result
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
                if index > 0 && generation == 0 {
                    lock.lock()
                    let abandon = stopSpeculating && index > 0
                    lock.unlock()
                    if abandon, cursorAbandonable(index) {
                        cursor.parser.detach(from: &sink)
                        sink.submitCurrent()
                        return finish(.skipped)
                    }
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
            if cursor.parser.isFinished { return finish(.finished(cursor)) }
            if cursor.parser.isAtBlockBoundary { return finish(.atBoundary) }
            return finish(.midBlock(cursor))
        } catch {
            // The parser has detached and put the first error in payload order first.
            sink.submitCurrent()
            return finish(.failed(EvaluationError(error), cursor))
        }
    }

    /// A speculative segment is dropped only when an earlier segment already stopped speculation.
    func cursorAbandonable(_ index: Int) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        for earlier in 0..<index {
            switch results[earlier].end {
            case .midBlock, .failed: return true
            default: continue
            }
        }
        return false
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

    func submit(_ chunk: RowChunk) { work.put(chunk) }

    // MARK: - Joining segments in payload order

    /// Walks segments in order, checks each guess, re-decodes where a guess was wrong or skipped, and
    /// returns the payload size or the first error in payload order.
    func joinSegments() -> Result<UInt64, RunFailure> {
        var bytesBase: UInt64 = 0
        var rowsBase: UInt64 = 0
        var carried: SegmentCursor?  // the cursor to continue when the previous segment did not end between blocks
        let decoder = ZstdDecompressor(windowLogMax: windowLogMax)
        let buffers = DecodeBuffers()
        for index in segments.indices {
            lock.lock()
            var result = results[index]
            lock.unlock()
            let guessHolds = index == 0 || carried == nil
            if !guessHolds || isSkipped(result.end) {
                let cursor: SegmentCursor
                if let previous = carried {
                    cursor = previous
                } else if index == 0 {
                    cursor = makeCursor(segment: 0, parser: ShardParser(), originBytes: 0, originRows: 0)
                } else {
                    guard let header = waitForHeader() else { break }
                    cursor = makeCursor(segment: index, parser: ShardParser(resumingAtBlockBoundaryWith: header),
                                        originBytes: bytesBase, originRows: rowsBase)
                }
                lock.lock()
                results[index].generation += 1
                results[index].accumulator = MetricAccumulator(options: options.metrics)
                let generation = results[index].generation
                lock.unlock()
                let rerun = decode(segment: index, cursor: cursor, decoder: decoder, buffers: buffers, generation: generation)
                result.end = rerun.end
                result.payloadBytes = rerun.payloadBytes
                result.rows = rerun.rows
            } else if index > 0 {
                result.end = rebase(result.end, bytes: bytesBase, rows: rowsBase)
            }
            switch result.end {
            case .failed(let error, let cursor):
                // A parser resumed at a block boundary cannot check num_rows at the end marker: a mismatch
                // there comes before an error found after the marker (trailing bytes, zstd).
                let first = rowCountMismatch(cursor, rows: rowsBase + result.rows)
                    ?? error.shifted(bytes: cursor.originBytes, rows: cursor.originRows)
                return .failure(RunFailure(error: first, payloadBytes: bytesBase + result.payloadBytes))
            case .skipped:
                preconditionFailure("segment left undecoded")
            case .atBoundary:
                carried = nil
            case .midBlock(let cursor):
                carried = cursor
            case .finished(let cursor):
                carried = cursor
                if let error = rowCountMismatch(cursor, rows: rowsBase + result.rows) {
                    return .failure(RunFailure(error: error, payloadBytes: bytesBase + result.payloadBytes))
                }
            }
            bytesBase += result.payloadBytes
            rowsBase += result.rows
        }
        lock.lock()
        let haveHeader = header != nil
        lock.unlock()
        precondition(haveHeader, "header missing after a successful join")
        return .success(bytesBase)
    }

    /// The num_rows mismatch at the end marker, when `cursor` read the marker and the shard holds `rows` rows.
    func rowCountMismatch(_ cursor: SegmentCursor, rows: UInt64) -> EvaluationError? {
        guard let stated = cursor.parser.header?.statedRows, stated != rows, let marker = cursor.parser.endMarkerOffset else { return nil }
        return EvaluationError(.format(.numRowsMismatch), at: marker + cursor.originBytes, "header states num_rows \(stated) but the shard holds \(rows) rows")
    }

    func isSkipped(_ end: SegmentEnd) -> Bool {
        if case .skipped = end { return true }
        return false
    }

    /// Speculative segments counted from their own start; give their cursors the true origin.
    func rebase(_ end: SegmentEnd, bytes: UInt64, rows: UInt64) -> SegmentEnd {
        func moved(_ c: SegmentCursor) -> SegmentCursor {
            c.originBytes = bytes
            c.originRows = rows
            return c
        }
        switch end {
        case .atBoundary, .skipped: return end
        case .midBlock(let c): return .midBlock(moved(c))
        case .finished(let c): return .finished(moved(c))
        case .failed(let e, let c): return .failed(e, moved(c))
        }
    }
}

/// The parser's sink: fills pool chunks with rows and queues them for the workers.
struct ChunkSink: ShardRowSink {
    let run: EvaluationRun
    let segment: Int
    let generation: Int
    var current: RowChunk?

    init(run: EvaluationRun, segment: Int, generation: Int) {
        self.run = run
        self.segment = segment
        self.generation = generation
    }

    mutating func rowSpace(for header: ShardHeader) -> UnsafeMutableRawBufferPointer {
        if current == nil {
            run.publishHeader(header)
            let chunk = run.chunkPool().take()!  // blocks while every chunk is in use: the backpressure
            chunk.segment = segment
            chunk.generation = generation
            current = chunk
        }
        let chunk = current!
        return UnsafeMutableRawBufferPointer(rebasing: chunk.storage[(chunk.rowCount * chunk.rowBytes)..<chunk.rowCapacityBytes])
    }

    mutating func rowsFilled(labels: UnsafeBufferPointer<Int64>) {
        let chunk = current!
        chunk.labels.append(contentsOf: labels)
        chunk.rowCount += labels.count
        if chunk.rowCount == chunk.capacityRows { submitCurrent() }
    }

    /// Queues the current chunk if it holds rows, or returns it to the pool.
    mutating func submitCurrent() {
        guard let chunk = current else { return }
        current = nil
        if chunk.rowCount > 0 { run.submit(chunk) } else { run.chunkPool().put(chunk) }
    }
}
