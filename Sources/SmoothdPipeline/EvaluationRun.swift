import LSHDFormat
import SmoothdMetrics
import Zstd

/// One evaluation of one file, shared by its decoder and worker threads. Planning is `SegmentPlan`,
/// decoding one frame group `EvaluationRun+Decode.swift`, joining the groups and assembling the
/// result `EvaluationRun+Join.swift`.
///
/// Sendable without exceptions: everything that changes lives in `shared`, behind one lock; the rest is
/// immutable; `work` and the chunk pool are `BlockingQueue`s, which synchronise themselves.
final class EvaluationRun: Sendable {
    /// The shard as named by the caller (for its failure).
    let shard: String
    let fd: Int32
    let fileSize: UInt64
    let options: EvaluationOptions
    let progress: ProgressCounter?
    let plan: SegmentPlan
    let shared: ConditionLock<State>
    let work = BlockingQueue<RowChunk>()

    /// What the threads share.
    struct State: Sendable {
        /// Known once segment 0 has read the header and metadata.
        var rows: RowSetup?
        /// Segment 0 ended without a header: speculative decoders stop waiting for one.
        var headerFailed = false
        /// One per segment, in file order.
        var results: [SegmentResult]
        /// The next segment a decoder thread takes.
        var nextSegment = 0
        /// Set when speculation stops paying off (a segment ended mid-block) or a segment failed.
        var stopSpeculating = false
        /// Decoder threads still decoding, and those that ran out of segments and evaluate the others' chunks.
        var decoding = 0
        var helping = 0
    }

    /// What rows need once the header is known: the header, the kernel for its dtype, and the chunk pool.
    struct RowSetup: Sendable {
        let header: ShardHeader
        let kernel: RowKernel.BatchFunction
        let pool: BlockingQueue<RowChunk>
        /// The bootstrap seed (`PoissonStream.seed`): the meta's `shard_index`, else the file's base name.
        let seed: UInt64
    }

    /// A valid shard's header, metrics and payload size.
    struct Output {
        var header: ShardHeader
        var accumulator: MetricAccumulator
        var payloadBytes: UInt64
        var labels: LabelDigest
    }

    init(shard: String, fd: Int32, fileSize: UInt64, options: EvaluationOptions, progress: ProgressCounter?) {
        self.shard = shard
        self.fd = fd
        self.fileSize = fileSize
        self.options = options
        self.progress = progress
        plan = SegmentPlan(fd: fd, fileSize: fileSize, options: options)
        let empty = SegmentResult(accumulator: MetricAccumulator(options: options.metrics))
        var state = State(results: Array(repeating: empty, count: plan.segments.count))
        state.decoding = plan.decoderCount
        shared = ConditionLock(state)
    }

    /// Decodes, evaluates and joins every segment. Blocking.
    func execute() -> Result<Output, ShardFailure> {
        let workers = (0..<(plan.evaluatesInline ? 0 : options.threads)).map { i in JoinableThread(name: "smoothd-worker-\(i)") { self.workerLoop() } }
        let decoders = (0..<plan.decoderCount).map { i in JoinableThread(name: "smoothd-decoder-\(i)") { self.decoderLoop() } }
        decoders.forEach { $0.join() }
        let outcome = joinSegments()
        work.close()
        workers.forEach { $0.join() }
        return outcome.map { assemble(payloadBytes: $0.0, labels: $0.1) }
    }

    /// Decodes segments, then, when decoders evaluate inline, evaluates the chunks of those still decoding
    /// (the last one's tail would otherwise run its kernel alone while this core idles).
    func decoderLoop() {
        decodeSegments()
        guard plan.evaluatesInline else { return }
        let last = shared.withLock { state in
            state.decoding -= 1
            state.helping += 1
            return state.decoding == 0
        }
        if last { work.close() }  // no decoder submits any more; the joining thread evaluates its own chunks
        while let chunk = work.take() { evaluate(chunk) }
    }

    /// Decoder threads take segments in order; segment 0 is exact, later ones guess a block boundary.
    func decodeSegments() {
        let decoder = ZstdDecompressor(windowLogMax: SegmentPlan.windowLogMax)
        let buffers = DecodeBuffers()
        while true {
            let index: Int? = shared.withLock { state in
                let index = state.nextSegment
                guard index < plan.segments.count && (index == 0 || !state.stopSpeculating) else { return nil }
                state.nextSegment += 1
                return index
            }
            guard let index else { return }
            let cursor: SegmentCursor
            if index == 0 {
                cursor = makeCursor(segment: 0, parser: ShardParser(), originBytes: 0, originRows: 0)
            } else {
                guard let header = waitForHeader() else { return }
                cursor = makeCursor(segment: index, parser: ShardParser(resumingAtBlockBoundaryWith: header), originBytes: 0, originRows: 0)
            }
            let decoded = decode(segment: index, cursor: cursor, decoder: decoder, buffers: buffers, generation: 0)
            shared.withLock(wake: .all) { state in
                state.results[index].decoded = decoded
                switch decoded.end {
                case .atBoundary, .finished: break
                case .midBlock, .failed, .skipped: state.stopSpeculating = true
                }
                if index == 0, state.rows == nil { state.headerFailed = true }
            }
        }
    }

    /// The header once segment 0 has read it, or nil when segment 0 ended without one.
    func waitForHeader() -> ShardHeader? {
        shared.wait(until: { $0.rows != nil || $0.headerFailed }) { $0.rows?.header }
    }

    /// Sets up row evaluation for `parsed` (the first call wins; later calls find it done).
    func publishHeader(_ parsed: ShardHeader) {
        shared.withLock(wake: .all) { state in
            guard state.rows == nil else { return }
            state.rows = RowSetup(header: parsed, kernel: KernelVariant.current.batchFunction(for: parsed.logitDType),
                                  pool: plan.makePool(rowBytes: parsed.rowLogitBytes),
                                  seed: PoissonStream.seed(shardIndex: parsed.meta?["shard_index"]?.intValue, name: shard))
        }
    }

    /// The row setup; only called once rows exist, which needs the header.
    var rowSetup: RowSetup {
        guard let rows = shared.withLock({ $0.rows }) else { preconditionFailure("rows before the header") }
        return rows
    }

    /// Worker threads evaluate chunks (when the decoders do not, `SegmentPlan.evaluatesInline`).
    func workerLoop() {
        while let chunk = work.take() { evaluate(chunk) }
    }

    /// Evaluates a full chunk, merges its metrics into its segment's result and returns it to the pool.
    func evaluate(_ chunk: RowChunk) {
        let rows = rowSetup
        let partial = chunk.evaluate(header: rows.header, options: options.metrics, kernel: rows.kernel, seed: rows.seed)
        shared.withLock { state in
            // A re-run of the segment bumped its generation: this chunk's rows no longer count.
            if state.results[chunk.segment].generation == chunk.generation {
                state.results[chunk.segment].accumulator.merge(partial)
            }
        }
        chunk.reset()
        rows.pool.put(chunk)
    }

    /// Hands a full chunk to the workers, or evaluates it on this thread while its rows are still in its cache
    /// unless a decoder that has finished is waiting to help.
    func submit(_ chunk: RowChunk) {
        if plan.evaluatesInline && !shared.withLock({ $0.decoding > 0 && $0.helping > 0 }) { evaluate(chunk) } else { work.put(chunk) }
    }
}
