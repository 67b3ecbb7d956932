import LSHDFormat
import Zstd

/// A byte range of the compressed file made of whole zstd frames, decoded by one thread.
struct Segment: Sendable {
    var start: UInt64
    var end: UInt64
}

/// How one file is split into frame groups, and the buffer sizes that follow from the options.
/// Made before any thread starts and never changed.
struct SegmentPlan: Sendable {
    /// The frame groups in file order; together they cover the file.
    let segments: [Segment]
    /// zstd frames in the file (1 when it could not be indexed).
    let frameCount: Int
    /// Threads decoding at once: one per group, at most one per worker thread.
    let decoderCount: Int
    /// True when a decoder runs on every thread: each then evaluates its own chunks (no worker threads), reading
    /// rows its core has just written instead of moving them to another core's cache.
    let evaluatesInline: Bool
    let options: EvaluationOptions

    /// zstd window limit: 8 MiB (levels 1–19 need no more; the zstd format asks decoders for at least
    /// that). Fixed, not scaled with the budget or the thread count: a frame with a larger window (zstd
    /// --long, --ultra on big inputs) is rejected under every setting, so results never depend on them.
    static let windowLogMax = 23

    /// Splits the file into frame groups: about four per thread, each at least 1 MiB compressed.
    init(fd: Int32, fileSize: UInt64, options: EvaluationOptions) {
        self.options = options
        var segments: [Segment] = []
        if let frames = ZstdFrameIndex.scan(fileDescriptor: fd, size: fileSize), !frames.isEmpty {
            frameCount = frames.count
            // Bootstrap weights need each row's index in the shard, known before its chunk is evaluated: one
            // decoder then (frame groups learn where they start only at the join); the workers still share the rows.
            if options.threads > 1 && options.metrics.bootstrapReplicates == 0 {
                let target = options.segmentTargetBytes.map { UInt64(max(1, $0)) }
                    ?? max(UInt64(1 << 20), fileSize / UInt64(4 * options.threads))
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
        } else {
            frameCount = 1
        }
        if segments.isEmpty { segments = [Segment(start: 0, end: fileSize)] }
        self.segments = segments
        decoderCount = min(options.threads, segments.count)
        evaluatesInline = decoderCount >= options.threads
    }

    /// Labels of a block beyond this many bytes are re-read in windows instead of kept:
    /// a sixteenth of the budget, at most 4 MiB.
    var labelMemoryLimit: Int { min(4 << 20, options.memoryBudget / 16) }

    /// The chunk pool once the row size is known: 2 chunks per worker and per decoder, each at most
    /// 2 MiB (larger chunks only cost memory) and together within what the budget leaves after zstd's
    /// buffers; never less than one row each. Decoders that evaluate inline need no worker chunks, and
    /// theirs are 512 KiB, so a chunk's rows are still in the core's 2 MiB L2 when the kernel reads them.
    func makePool(rowBytes: Int) -> BlockingQueue<RowChunk> {
        let chunkCount = evaluatesInline ? 2 * decoderCount : 2 * options.threads + 2 * decoderCount
        let zstdReserve = decoderCount * (2 * ZstdDecompressor.recommendedOutputSize + (1 << min(Self.windowLogMax, 23)))
        let forChunks = max(0, options.memoryBudget - zstdReserve)
        let perChunk = min(evaluatesInline ? 512 << 10 : 2 << 20, forChunks / chunkCount)
        let rowsPerChunk = max(1, perChunk / rowBytes)
        let count = rowsPerChunk == 1 ? max(2, min(chunkCount, forChunks / rowBytes)) : chunkCount
        return BlockingQueue((0..<count).map { _ in RowChunk(rowBytes: rowBytes, capacityRows: rowsPerChunk) })
    }
}
