import SmoothdJSON

/// Where the parser puts whole rows: it fills caller-owned space with raw logit bytes, row after row.
public protocol ShardRowSink {
    /// Space for the next rows' logits. Its size is a positive multiple of `header.rowLogitBytes`.
    mutating func rowSpace(for header: ShardHeader) -> UnsafeMutableRawBufferPointer
    /// The first `labels.count` rows of the last space are complete; `labels` holds their labels in order.
    mutating func rowsFilled(labels: UnsafeBufferPointer<Int64>)
}

/// Reads payload bytes again from an earlier offset, so a block whose labels are too many to keep in
/// memory can be read in windows while its logits stream by. Reads move forward only.
public protocol PayloadRangeReader: AnyObject {
    /// Fills `buffer` with payload bytes from `offset` (counted from where the parser started), or
    /// returns how many bytes were available before the payload ended. Its errors reach the parser's
    /// caller unchanged, as `ShardParseError.sourceFailed`.
    func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int
}

/// An incremental LSHD v1 parser: `fill` lets a producer (a decoder, a copy from memory) write payload
/// bytes in pieces of any size, and the parser validates them and hands whole rows to a sink. It holds
/// the header, the labels of the current block and at most one partly received row (in the sink's
/// space); nothing grows with the shard.
///
/// Use: `fill` until the bytes run out, then `finish` at the end of the payload, or `detach` when the
/// sink's space must be released with more payload to come. A thrown error is already the first in
/// payload order (a bad label that was skipped over and read later through `labelReader` comes first)
/// and the parser is detached from the sink's space.
///
/// Non-copyable: it keeps a pointer into the sink's space, which two copies must not both write.
/// Offsets in its errors count from where the parser started (the payload start, unless it was
/// created with `resumingAtBlockBoundary`).
public struct ShardParser: ~Copyable {
    enum Phase { case header, meta, blockHeader, labels, skippingLabels, logits, finished }

    /// Re-reads labels of blocks whose labels exceed `labelMemoryLimit`; without one, labels are kept whole.
    public var labelReader: (any PayloadRangeReader)?
    /// Bytes of labels kept in memory per block; larger blocks read their labels through `labelReader`.
    public var labelMemoryLimit = 4 << 20

    /// The header, once it has been read (or given).
    public private(set) var header: ShardHeader?
    /// Payload bytes consumed so far.
    public private(set) var offset: UInt64 = 0
    /// Rows seen so far, ignored and non-finite ones included.
    public private(set) var rows: UInt64 = 0
    /// Offset of the end marker, once it has been read.
    public private(set) var endMarkerOffset: UInt64?

    var phase: Phase = .header
    var verifiesRowCount = true
    var fieldBytes: [UInt8] = []
    var fieldNeeded = ShardHeader.fixedSize
    var metaLength = 0
    var blockRows = 0
    /// Labels of the current block, or (when they are read through `labelReader`) a window of them
    /// starting at row `labelWindowStart`.
    var blockLabels: [Int64] = []
    var labelWindowStart = 0
    var labelsViaReader = false
    var blockLabelsOffset: UInt64 = 0
    var labelBytesLeft = 0
    var blockLogitBytesLeft = 0
    var rowInBlock = 0
    var space = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    var spaceUsed = 0
    var rowsInSpace = 0
    var pendingLabels: [Int64] = []
    /// A partly received row kept by `detachFromSpace`, copied into the next space.
    var carriedRowBytes: [UInt8] = []

    /// A parser for a whole payload, starting at its first byte.
    public init() {
        fieldBytes.reserveCapacity(ShardHeader.fixedSize)
    }

    /// A parser for a payload piece that starts exactly at a block header (or the end marker), for
    /// decoding frames in parallel. It does not check num_rows (it cannot know earlier rows); the
    /// caller checks `rows` against the header once pieces are joined.
    public init(resumingAtBlockBoundaryWith header: ShardHeader) {
        self.header = header
        phase = .blockHeader
        fieldNeeded = 4
        verifiesRowCount = false
    }

    /// True when the parser stands between blocks: the next bytes must be a block header or the end marker.
    public var isAtBlockBoundary: Bool { phase == .blockHeader && fieldBytes.isEmpty }
    /// True once the end marker has been read.
    public var isFinished: Bool { phase == .finished }

    /// The header once its metadata has been read too (a block or the end marker comes next).
    public var completeHeader: ShardHeader? {
        header.flatMap { offset >= $0.firstBlockOffset ? $0 : nil }
    }

    /// Logit space smaller than this goes through `staging`: tiny direct writes cost more than a copy.
    static let directMinimum = 4096

    /// Lets `produce` write the next payload bytes, then parses what it wrote. Inside a block's logits
    /// `produce` gets the sink's row space itself (no copy); elsewhere it gets `staging`, from which the
    /// parser copies. `produce` returns how many bytes it wrote; the result tells whether it filled all
    /// it was given (a decoder may then hold more output). An error of `produce` stops the parser like
    /// one of its own (`sourceFailed`, unless a bad label comes first).
    public mutating func fill<Failure: Error>(
        into sink: inout some ShardRowSink, staging: UnsafeMutableRawBufferPointer,
        _ produce: (UnsafeMutableRawBufferPointer) throws(Failure) -> Int
    ) throws(ShardParseError) -> Bool {
        var direct: UnsafeMutableRawBufferPointer?
        if phase == .logits {
            let space = logitSpace(into: &sink)
            if space.count >= Self.directMinimum { direct = space }
        }
        let target = direct ?? staging
        let written: Int
        do {
            written = try produce(target)
        } catch {
            throw stop(error, into: &sink)
        }
        do throws(ShardParseError) {
            if written > 0 {
                if direct != nil {
                    try advanceLogits(by: written, into: &sink)
                } else {
                    try consume(UnsafeRawBufferPointer(rebasing: target[0..<written]), into: &sink)
                }
            }
        } catch {
            detach(from: &sink)
            throw error
        }
        return written == target.count
    }

    /// Stops at a failure of the bytes' source (`failure`, found at the current offset): detaches, and
    /// returns the error to report, which is a bad label skipped over before this offset if there is one.
    public mutating func stop(_ failure: any Error, into sink: inout some ShardRowSink) -> ShardParseError {
        let first = firstLabelError(before: offset)
        detach(from: &sink)
        return first.map { .invalid($0) } ?? .sourceFailed(failure)
    }

    /// Parses `bytes`, handing complete rows to `sink`.
    mutating func consume(_ bytes: UnsafeRawBufferPointer, into sink: inout some ShardRowSink) throws(ShardParseError) {
        var index = 0
        while index < bytes.count {
            switch phase {
            case .header, .meta, .blockHeader:
                let take = min(fieldNeeded - fieldBytes.count, bytes.count - index)
                fieldBytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[index..<(index + take)]))
                index += take
                offset += UInt64(take)
                do throws(ShardError) {
                    if phase == .header { try checkHeaderPrefix() }
                    if fieldBytes.count == fieldNeeded { try completeField(into: &sink) }
                } catch {
                    throw .invalid(error)
                }
            case .labels:
                do throws(ShardError) {
                    index += try consumeLabels(UnsafeRawBufferPointer(rebasing: bytes[index...]))
                } catch {
                    throw .invalid(error)
                }
            case .skippingLabels:
                let take = min(labelBytesLeft, bytes.count - index)
                index += take
                offset += UInt64(take)
                labelBytesLeft -= take
                if labelBytesLeft == 0 { phase = .logits }
            case .logits:
                index += try consumeLogits(UnsafeRawBufferPointer(rebasing: bytes[index...]), into: &sink)
            case .finished:
                throw .invalid(ShardError(.trailingBytes, at: offset, "\(bytes.count - index) or more bytes after the end marker"))
            }
        }
    }

    /// Declares the end of the payload: detaches from the sink's space, and throws unless the end
    /// marker was read.
    public mutating func finish(into sink: inout some ShardRowSink) throws(ShardError) {
        detach(from: &sink)
        guard phase == .finished else {
            if let labelError = firstLabelError(before: offset) { throw labelError }
            let place: String
            switch phase {
            case .header: place = "inside the header"
            case .meta: place = "inside the metadata"
            case .blockHeader: place = fieldBytes.isEmpty ? "before the end marker" : "inside a block header"
            case .labels, .skippingLabels: place = "inside the labels of a block of \(blockRows) rows"
            case .logits: place = "inside the logits"
            case .finished: place = ""
            }
            // The row goes in `row`, not the text: a parser resumed at a block boundary counts rows from
            // its own start, and `shifted(bytes:rows:)` makes the row absolute.
            throw ShardError(.truncated, at: offset, "payload ends \(place) (no end marker)", row: phase == .logits ? rows : nil)
        }
    }

    // MARK: - Header and fixed fields

    /// Validates header fields as soon as their bytes arrive, so the first broken rule wins.
    mutating func checkHeaderPrefix() throws(ShardError) {
        let n = fieldBytes.count
        if n >= 4, fieldBytes[0..<4] != [0x4C, 0x53, 0x48, 0x44] {
            throw ShardError(.badMagic, at: 0, "not an LSHD payload (magic \(hexBytes(fieldBytes[0..<4])), expected \"LSHD\")")
        }
        if n >= 6 {
            let version = UInt16(littleEndianBytes: fieldBytes[4..<6])
            if version != ShardHeader.supportedVersion {
                throw ShardError(.unsupportedVersion, at: 4, "unsupported version \(version) (this reader knows version 1)")
            }
        }
        if n >= 7, LogitDType(rawValue: fieldBytes[6]) == nil {
            throw ShardError(.unknownLogitDType, at: 6, "unknown logit dtype code \(fieldBytes[6]) (1 = float32, 2 = float16, 3 = bfloat16)")
        }
        if n >= 8, LabelDType(rawValue: fieldBytes[7]) == nil {
            throw ShardError(.unknownLabelDType, at: 7, "unknown label dtype code \(fieldBytes[7]) (1 = int32, 2 = int64)")
        }
        if n >= 12 {
            let k = UInt32(littleEndianBytes: fieldBytes[8..<12])
            if !ShardHeader.classCountRange.contains(Int(k)) {
                throw ShardError(.numClassesOutOfRange, at: 8, "num_classes \(k) out of range [2, 16777216]")
            }
        }
        if n >= 16 {
            let m = UInt32(littleEndianBytes: fieldBytes[12..<16])
            if Int(m) > ShardHeader.maximumMetaLength {
                throw ShardError(.metaTooLong, at: 12, "meta_len \(m) exceeds 1048576")
            }
        }
    }

    mutating func completeField(into sink: inout some ShardRowSink) throws(ShardError) {
        switch phase {
        case .header:
            let k = Int(UInt32(littleEndianBytes: fieldBytes[8..<12]))
            metaLength = Int(UInt32(littleEndianBytes: fieldBytes[12..<16]))
            let stated = UInt64(littleEndianBytes: fieldBytes[24..<32])
            header = ShardHeader(
                logitDType: LogitDType(rawValue: fieldBytes[6])!, labelDType: LabelDType(rawValue: fieldBytes[7])!,
                numClasses: k, ignoreIndex: Int64(bitPattern: UInt64(littleEndianBytes: fieldBytes[16..<24])),
                statedRows: stated == 0 ? nil : stated, meta: nil, metaLength: metaLength)
            startField(metaLength > 0 ? .meta : .blockHeader, size: metaLength > 0 ? metaLength : 4)
        case .meta:
            let metaStart = UInt64(ShardHeader.fixedSize)
            let value: JSONValue
            do {
                value = try JSONValue.parse(utf8: fieldBytes)
            } catch {
                throw ShardError(.metaNotJSONObject, at: metaStart, "meta is not valid JSON (\(error.reason) at byte \(error.offset) of meta)")
            }
            guard case .object = value else {
                throw ShardError(.metaNotJSONObject, at: metaStart, "meta is JSON but not an object")
            }
            header?.meta = value
            startField(.blockHeader, size: 4)
        case .blockHeader:
            let count = UInt32(littleEndianBytes: fieldBytes[0..<4])
            let markerOffset = offset - 4
            if count == 0 {
                phase = .finished
                endMarkerOffset = markerOffset
                flushRows(into: &sink)
                if verifiesRowCount, let stated = header?.statedRows, stated != rows {
                    throw ShardError(.numRowsMismatch, at: markerOffset, "header states num_rows \(stated) but the shard holds \(rows) rows")
                }
                return
            }
            guard let header else { preconditionFailure("block before header") }
            blockRows = Int(count)
            rowInBlock = 0
            labelBytesLeft = blockRows * header.labelDType.byteWidth
            blockLogitBytesLeft = blockRows * header.rowLogitBytes
            blockLabels.removeAll(keepingCapacity: true)
            labelWindowStart = 0
            blockLabelsOffset = offset
            fieldBytes.removeAll(keepingCapacity: true)
            labelsViaReader = labelReader != nil && labelBytesLeft > labelMemoryLimit
            if labelsViaReader {
                phase = .skippingLabels
            } else {
                blockLabels.reserveCapacity(blockRows)
                phase = .labels
            }
        case .labels, .skippingLabels, .logits, .finished:
            preconditionFailure("not a fixed field")
        }
    }

    mutating func startField(_ next: Phase, size: Int) {
        phase = next
        fieldNeeded = size
        fieldBytes.removeAll(keepingCapacity: true)
        fieldBytes.reserveCapacity(size)
    }

    // MARK: - Labels

    /// Reads labels (possibly split across calls) and validates each as it completes.
    mutating func consumeLabels(_ bytes: UnsafeRawBufferPointer) throws(ShardError) -> Int {
        guard let header else { preconditionFailure("labels before header") }
        let width = header.labelDType.byteWidth
        let take = min(labelBytesLeft, bytes.count)
        var index = 0
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

    // MARK: - Logits

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

func hexBytes(_ bytes: ArraySlice<UInt8>) -> String {
    bytes.map { let h = String($0, radix: 16); return h.count == 1 ? "0" + h : h }.joined(separator: " ")
}

extension FixedWidthInteger {
    /// Reads a little-endian integer from exactly `MemoryLayout<Self>.size` bytes.
    init(littleEndianBytes bytes: ArraySlice<UInt8>) {
        var value: Self = 0
        for (i, b) in bytes.enumerated() { value |= Self(b) << (8 * i) }
        self = value
    }
}
