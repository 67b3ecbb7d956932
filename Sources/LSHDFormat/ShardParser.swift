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
    public internal(set) var header: ShardHeader?
    /// Payload bytes consumed so far.
    public internal(set) var offset: UInt64 = 0
    /// Rows seen so far, ignored and non-finite ones included.
    public internal(set) var rows: UInt64 = 0
    /// Offset of the end marker, once it has been read.
    public internal(set) var endMarkerOffset: UInt64?

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
}
