/// Labels: read and checked as they arrive, or re-read in windows through `labelReader`.
extension ShardParser {
    /// Reads labels (possibly split across calls) and validates each as it completes.
    mutating func consumeLabels(_ bytes: UnsafeRawBufferPointer) throws(ShardError) -> Int {
        guard let header else { preconditionFailure("labels before header") }
        let width = header.labelDType.byteWidth
        let take = min(labelBytesLeft, bytes.count)
        var index = 0
        if fieldBytes.isEmpty, width == 8, take >= 8 {
            // Whole int64 labels, the common case: one tight loop (small K has millions of them). A bad label
            // stops it, and the general loop below reports it at its offset.
            let whole = take / 8
            let k = Int64(header.numClasses), ignore = header.ignoreIndex
            while index < whole * 8 {
                let label = Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: index, as: Int64.self))
                if (label < 0 || label >= k) && label != ignore { break }
                blockLabels.append(label)
                index += 8
            }
        }
        while index < take {
            let label: Int64
            let labelOffset: UInt64
            if fieldBytes.isEmpty, take - index >= width {
                label = width == 8 ? Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: index, as: Int64.self))
                    : Int64(Int32(littleEndian: bytes.loadUnaligned(fromByteOffset: index, as: Int32.self)))
                labelOffset = offset + UInt64(index)
                index += width
            } else {
                let part = min(width - fieldBytes.count, take - index)
                fieldBytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[index..<(index + part)]))
                index += part
                guard fieldBytes.count == width else { continue }
                label = width == 8 ? Int64(bitPattern: UInt64(littleEndianBytes: fieldBytes[0..<8]))
                    : Int64(Int32(bitPattern: UInt32(littleEndianBytes: fieldBytes[0..<4])))
                labelOffset = offset + UInt64(index) - UInt64(width)
                fieldBytes.removeAll(keepingCapacity: true)
            }
            try check(label: label, at: labelOffset, row: rows + UInt64(blockLabels.count), header: header)
            blockLabels.append(label)
        }
        offset += UInt64(take)
        labelBytesLeft -= take
        if labelBytesLeft == 0 { phase = .logits }
        return take
    }

    func check(label: Int64, at labelOffset: UInt64, row: UInt64, header: ShardHeader) throws(ShardError) {
        if (label < 0 || label >= Int64(header.numClasses)) && label != header.ignoreIndex {
            throw ShardError(.labelOutOfRange, at: labelOffset,
                             "label \(label) out of range [0, \(header.numClasses)) and not ignore_index \(header.ignoreIndex)", row: row)
        }
    }

    /// Labels read through `labelReader` per window: 64 Ki labels (at most 512 KiB).
    static let labelWindowRows = 65_536

    /// The label of row `row` of the current block, refilling the window from the reader when needed.
    mutating func label(ofBlockRow row: Int) throws(ShardParseError) -> Int64 {
        if !labelsViaReader { return blockLabels[row] }
        if row >= labelWindowStart + blockLabels.count {
            try fillLabelWindow(from: row, count: min(Self.labelWindowRows, blockRows - row))
        }
        return blockLabels[row - labelWindowStart]
    }

    /// Reads and validates labels [row, row + count) of the current block. Windows are read in order,
    /// so when the reader fails no label before `start` is left unchecked.
    mutating func fillLabelWindow(from row: Int, count: Int) throws(ShardParseError) {
        guard let header, let labelReader else { preconditionFailure("no label reader") }
        let width = header.labelDType.byteWidth
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: count * width, alignment: 8)
        defer { buffer.deallocate() }
        let start = blockLabelsOffset + UInt64(row * width)
        let got: Int
        do {
            got = try labelReader.read(at: start, into: buffer)
        } catch {
            throw .sourceFailed(error)
        }
        let raw = UnsafeRawBufferPointer(buffer)
        blockLabels.removeAll(keepingCapacity: true)
        labelWindowStart = row
        let rowBase = rows - UInt64(rowInBlock)
        for i in 0..<(got / width) {
            let label = width == 8 ? Int64(littleEndian: raw.loadUnaligned(fromByteOffset: i * 8, as: Int64.self))
                : Int64(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: i * 4, as: Int32.self)))
            do throws(ShardError) {
                try check(label: label, at: start + UInt64(i * width), row: rowBase + UInt64(row + i), header: header)
            } catch {
                throw .invalid(error)
            }
            blockLabels.append(label)
        }
    }

    /// When labels are read through the reader, a bad label earlier in the payload than a later error
    /// (truncation, zstd) must win: this checks the current block's labels stored before `errorOffset`.
    mutating func firstLabelError(before errorOffset: UInt64) -> ShardError? {
        guard labelsViaReader, phase == .skippingLabels || phase == .logits, let header else { return nil }
        let width = header.labelDType.byteWidth
        var row = labelWindowStart + blockLabels.count
        while row < blockRows, blockLabelsOffset + UInt64(row * width) < errorOffset {
            let count = min(Self.labelWindowRows, blockRows - row)
            do {
                try fillLabelWindow(from: row, count: count)
            } catch {
                if case .invalid(let invalid) = error, invalid.kind == .labelOutOfRange { return invalid }
                return nil
            }
            if blockLabels.count < count { break }
            row += count
        }
        return nil
    }
}

/// Logits: copied or written straight into the sink's space, whole rows handed over.
extension ShardParser {
    /// Copies logit bytes into the sink's space, as many rows at a time as the input holds.
    mutating func consumeLogits(_ bytes: UnsafeRawBufferPointer, into sink: inout some ShardRowSink) throws(ShardParseError) -> Int {
        var index = 0
        while index < bytes.count, phase == .logits {
            let destination = logitSpace(into: &sink)
            let take = min(bytes.count - index, destination.count)
            destination.baseAddress!.copyMemory(from: bytes.baseAddress! + index, byteCount: take)
            index += take
            try advanceLogits(by: take, into: &sink)
        }
        return index
    }

    /// The free part of the sink's space, limited to the current block's remaining logits.
    mutating func logitSpace(into sink: inout some ShardRowSink) -> UnsafeMutableRawBufferPointer {
        guard let header else { preconditionFailure("logits before header") }
        if spaceUsed == space.count {
            flushRows(into: &sink)
            space = sink.rowSpace(for: header)
            precondition(space.count >= header.rowLogitBytes && space.count % header.rowLogitBytes == 0, "sink space must hold whole rows")
            if !carriedRowBytes.isEmpty {
                carriedRowBytes.withUnsafeBytes { space.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                spaceUsed = carriedRowBytes.count
                carriedRowBytes.removeAll()
            }
        }
        let count = min(space.count - spaceUsed, blockLogitBytesLeft)
        return UnsafeMutableRawBufferPointer(rebasing: space[spaceUsed..<(spaceUsed + count)])
    }

    /// Accounts for `count` logit bytes just written at the start of `logitSpace`: completes rows,
    /// hands a full space to the sink and moves on at the end of the block.
    mutating func advanceLogits(by count: Int, into sink: inout some ShardRowSink) throws(ShardParseError) {
        guard let header else { preconditionFailure("logits before header") }
        spaceUsed += count
        blockLogitBytesLeft -= count
        offset += UInt64(count)
        let completeRows = spaceUsed / header.rowLogitBytes
        if !labelsViaReader, rowsInSpace < completeRows {
            // Labels kept in memory: one slice per call instead of a call per row (small K has millions of rows).
            let n = completeRows - rowsInSpace
            pendingLabels.append(contentsOf: blockLabels[rowInBlock..<(rowInBlock + n)])
            rowInBlock += n
            rowsInSpace += n
            rows += UInt64(n)
        }
        while rowsInSpace < completeRows {
            pendingLabels.append(try label(ofBlockRow: rowInBlock))
            rowInBlock += 1
            rowsInSpace += 1
            rows += 1
        }
        if blockLogitBytesLeft == 0 { startField(.blockHeader, size: 4) }
        if spaceUsed == space.count, rowsInSpace > 0 { flushRows(into: &sink) }
    }

    /// Hands the complete rows in the current space to the sink.
    mutating func flushRows(into sink: inout some ShardRowSink) {
        guard rowsInSpace > 0 else { return }
        pendingLabels.withUnsafeBufferPointer { sink.rowsFilled(labels: $0) }
        pendingLabels.removeAll(keepingCapacity: true)
        space = UnsafeMutableRawBufferPointer(start: nil, count: 0)
        spaceUsed = 0
        rowsInSpace = 0
    }

    /// Hands complete rows to the sink and stops using its space; a partly received row is kept
    /// inside the parser and continues in the next space. Call it before the sink's space goes away.
    public mutating func detach(from sink: inout some ShardRowSink) {
        guard space.count > 0, let header else { return }
        let completeBytes = rowsInSpace * header.rowLogitBytes
        if spaceUsed > completeBytes {
            carriedRowBytes = Array(UnsafeRawBufferPointer(rebasing: space[completeBytes..<spaceUsed]))
        }
        spaceUsed = completeBytes
        flushRows(into: &sink)
        space = UnsafeMutableRawBufferPointer(start: nil, count: 0)
        spaceUsed = 0
    }
}
