import Zstd

/// One input of the libFuzzer target (Sources/SmoothdFuzz), as kept in Fixtures/fuzz-regressions: a
/// control byte, then the bytes under test. Shared by the fuzz target and the regression tests, so
/// both build the same shard file from it.
///
/// Control byte bits 0–1 choose the path:
/// - 0: the bytes are a raw LSHD payload, wrapped in one zstd frame;
/// - 1: a raw payload, wrapped in many small frames (some without a content size, a skippable frame
///   first when bit 2 is set), so the pipeline decodes frame groups in parallel;
/// - 2, 3: the bytes are the compressed shard file itself.
///
/// Raw payloads are also parsed directly by the fuzz target, which must agree with the pipeline.
/// Bits 2–4 pick the direct parser's piece size, bits 5–6 its rows per sink space, bit 7 re-reads every
/// block's labels through the reader and detaches from the sink after each piece.
public struct FuzzInput: Sendable {
    /// How the bytes become a shard file.
    public enum Path: Sendable { case rawSingleFrame, rawManyFrames, compressedFile }

    /// Piece sizes bits 2–4 choose from.
    public static let pieceSizes = [1, 2, 3, 7, 16, 255, 4096, Int.max]
    /// Rows per sink space bits 5–6 choose from.
    public static let rowsPerSpace = [1, 2, 3, 64]

    /// How the bytes become a shard file.
    public let path: Path
    /// The direct parser's piece size.
    public let pieceSize: Int
    /// The direct parser's rows per sink space.
    public let rowsPerSpace: Int
    /// Whether the direct parser re-reads every block's labels through its reader.
    public let labelsThroughReader: Bool
    /// Whether many-frame files start with a skippable frame.
    public let leadingSkippableFrame: Bool
    /// The bytes under test.
    public let body: [UInt8]

    /// Decodes an input; nil when it is empty.
    public init?(_ bytes: UnsafeRawBufferPointer) {
        guard let control = bytes.first else { return nil }
        switch control & 3 {
        case 0: path = .rawSingleFrame
        case 1: path = .rawManyFrames
        default: path = .compressedFile
        }
        pieceSize = Self.pieceSizes[Int(control >> 2) & 7]
        rowsPerSpace = Self.rowsPerSpace[Int(control >> 5) & 3]
        labelsThroughReader = control & 0x80 != 0
        leadingSkippableFrame = control & 4 != 0
        body = Array(bytes.dropFirst())
    }

    /// The shard file the fuzz target evaluates: the body wrapped in zstd as `path` says, or the body
    /// itself. Many frames hold max(piece size, n/48 + 1) bytes each (4096 for the largest piece size),
    /// every second one without a content size.
    public func shardFile() throws -> [UInt8] {
        switch path {
        case .rawSingleFrame:
            return try ZstdCompressor.compressFrame(body, level: 1)
        case .rawManyFrames:
            let frameBytes = max(pieceSize == .max ? 4096 : pieceSize, body.count / 48 + 1)
            var out: [UInt8] = leadingSkippableFrame ? [0x5E, 0x2A, 0x4D, 0x18, 3, 0, 0, 0, 1, 2, 3] : []
            let encoder = ZstdCompressor(level: 1)
            var start = 0
            var frame = 0
            repeat {
                let end = min(body.count, start + frameBytes)
                if frame % 2 == 0 { try encoder.pledgeFrameSize(UInt64(end - start)) }
                try body[start..<end].withUnsafeBytes { piece in try encoder.write(piece) { out.append(contentsOf: $0) } }
                try encoder.endFrame { out.append(contentsOf: $0) }
                start = end
                frame += 1
            } while start < body.count
            return out
        case .compressedFile:
            return body
        }
    }
}
