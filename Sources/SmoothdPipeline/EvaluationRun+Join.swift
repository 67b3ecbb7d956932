import LSHDFormat
import SmoothdMetrics
import Zstd

extension SegmentEnd {
    /// The cursor the segment ended with, when it carries one.
    var cursor: SegmentCursor? {
        switch self {
        case .atBoundary, .skipped: return nil
        case .midBlock(let c), .finished(let c), .failed(_, let c): return c
        }
    }
}

extension EvaluationRun {
    /// The shard's failure: its first error in payload order, and the payload bytes decoded before the segment
    /// it is in ended.
    func failure(_ error: EvaluationError, payloadBytes: UInt64) -> ShardFailure {
        ShardFailure(shard: shard, error: error, compressedBytes: fileSize, payloadBytes: payloadBytes)
    }

    /// Walks segments in order, checks each guess, re-decodes where a guess was wrong or skipped, and
    /// returns the payload size or the first error in payload order. Runs after the decoder threads ended.
    func joinSegments() -> Result<(UInt64, LabelDigest), ShardFailure> {
        var labels = LabelDigest()  // the segments' digests in file order
        var bytesBase: UInt64 = 0
        var rowsBase: UInt64 = 0
        var carried: SegmentCursor?  // the cursor to continue when the previous segment did not end between blocks
        let decoder = ZstdDecompressor(windowLogMax: SegmentPlan.windowLogMax)
        let buffers = DecodeBuffers()
        for index in plan.segments.indices {
            var decoded = shared.withLock { $0.results[index].decoded }
            var skipped = false
            if case .skipped = decoded.end { skipped = true }
            let guessHolds = index == 0 || carried == nil
            if !guessHolds || skipped {
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
                let generation = shared.withLock { state in
                    state.results[index].generation += 1
                    state.results[index].accumulator = MetricAccumulator(options: options.metrics)
                    return state.results[index].generation
                }
                decoded = decode(segment: index, cursor: cursor, decoder: decoder, buffers: buffers, generation: generation)
            } else if index > 0, let cursor = decoded.end.cursor {
                // Speculative segments counted from their own start; give their cursors the true origin.
                cursor.originBytes = bytesBase
                cursor.originRows = rowsBase
            }
            switch decoded.end {
            case .failed(let error, let cursor):
                // A parser resumed at a block boundary cannot check num_rows at the end marker: a mismatch
                // there comes before an error found after the marker (trailing bytes, zstd).
                let first = rowCountMismatch(cursor, rows: rowsBase + decoded.rows)
                    ?? error.shifted(bytes: cursor.originBytes, rows: cursor.originRows)
                return .failure(failure(first, payloadBytes: bytesBase + decoded.payloadBytes))
            case .skipped:
                preconditionFailure("segment left undecoded")
            case .atBoundary:
                carried = nil
            case .midBlock(let cursor):
                carried = cursor
            case .finished(let cursor):
                carried = cursor
                if let error = rowCountMismatch(cursor, rows: rowsBase + decoded.rows) {
                    return .failure(failure(error, payloadBytes: bytesBase + decoded.payloadBytes))
                }
            }
            bytesBase += decoded.payloadBytes
            rowsBase += decoded.rows
            labels.append(decoded.labels)
        }
        precondition(shared.withLock { $0.rows != nil }, "header missing after a successful join")
        return .success((bytesBase, labels))
    }

    /// The num_rows mismatch at the end marker, when `cursor` read the marker and the shard holds `rows` rows.
    func rowCountMismatch(_ cursor: SegmentCursor, rows: UInt64) -> EvaluationError? {
        guard let stated = cursor.parser.header?.statedRows, stated != rows, let marker = cursor.parser.endMarkerOffset else { return nil }
        return EvaluationError(.format(.numRowsMismatch), at: marker + cursor.originBytes,
                               "header states num_rows \(stated) but the shard holds \(rows) rows")
    }

    /// The valid shard's result once every worker has merged: the segments' metrics merged in file order.
    func assemble(payloadBytes: UInt64, labels: LabelDigest) -> Output {
        shared.withLock { state in
            var total = MetricAccumulator(options: options.metrics)
            for result in state.results { total.merge(result.accumulator) }
            // No more rows: the shard's state is kept (summaries, ledgers), so its histogram keeps only its non-empty bins.
            total.confidenceHistogram?.compact()
            return Output(header: state.rows!.header, accumulator: total, payloadBytes: payloadBytes, labels: labels)
        }
    }
}
