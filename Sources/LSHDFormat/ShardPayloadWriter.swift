import SmoothdJSON

/// Writes an LSHD v1 payload (uncompressed) block by block to a byte sink.
/// Used by tests and the benchmark generator; producers normally use `Scripts/lshd.py`.
public struct ShardPayloadWriter {
    /// The header being written.
    public let header: ShardHeader
    private let emit: (UnsafeRawBufferPointer) throws -> Void
    /// Rows written so far.
    public private(set) var rowsWritten: UInt64 = 0

    /// Writes the header (with `metaText` as the metadata bytes) and returns a writer for blocks.
    public init(header: ShardHeader, metaText: String = "", emit: @escaping (UnsafeRawBufferPointer) throws -> Void) throws {
        self.header = header
        self.emit = emit
        var bytes: [UInt8] = Array("LSHD".utf8)
        bytes.appendLittleEndian(UInt16(1))
        bytes.append(header.logitDType.rawValue)
        bytes.append(header.labelDType.rawValue)
        bytes.appendLittleEndian(UInt32(header.numClasses))
        let meta = Array(metaText.utf8)
        bytes.appendLittleEndian(UInt32(meta.count))
        bytes.appendLittleEndian(header.ignoreIndex)
        bytes.appendLittleEndian(header.statedRows ?? 0)
        bytes += meta
        try bytes.withUnsafeBytes { try emit($0) }
    }

    /// Writes one block: `labels.count` rows, with `logitBytes` holding their logits already encoded
    /// in the header's logit dtype (row-major, little-endian).
    public mutating func writeBlock(labels: [Int64], logitBytes: UnsafeRawBufferPointer) throws {
        precondition(!labels.isEmpty && logitBytes.count == labels.count * header.rowLogitBytes)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(4 + labels.count * 8)
        bytes.appendLittleEndian(UInt32(labels.count))
        for label in labels {
            if header.labelDType == .int64 { bytes.appendLittleEndian(label) } else { bytes.appendLittleEndian(Int32(truncatingIfNeeded: label)) }
        }
        try bytes.withUnsafeBytes { try emit($0) }
        try emit(logitBytes)
        rowsWritten += UInt64(labels.count)
    }

    /// Writes a block from float32 logits, converting them to the header's dtype.
    public mutating func writeBlock(labels: [Int64], logits: [Float]) throws {
        let encoded = LogitEncoding.encode(logits, as: header.logitDType)
        try encoded.withUnsafeBytes { try writeBlock(labels: labels, logitBytes: $0) }
    }

    /// Writes the end marker.
    public func finish() throws {
        try [UInt8](repeating: 0, count: 4).withUnsafeBytes { try emit($0) }
    }
}

/// Conversions from float32 to the stored logit encodings (round to nearest even).
public enum LogitEncoding {
    /// Little-endian bytes of `values` in `dtype`.
    public static func encode(_ values: [Float], as dtype: LogitDType) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(values.count * dtype.byteWidth)
        for v in values {
            switch dtype {
            case .float32: out.appendLittleEndian(v.bitPattern)
            case .float16: out.appendLittleEndian(Float16(v).bitPattern)
            case .bfloat16: out.appendLittleEndian(bfloat16Bits(v))
            }
        }
        return out
    }

    /// bfloat16 bits of `v`, rounded to nearest even; NaN stays NaN.
    public static func bfloat16Bits(_ v: Float) -> UInt16 {
        let bits = v.bitPattern
        if v.isNaN { return UInt16(bits >> 16) | 0x40 }
        let rounding = UInt32(0x7FFF) + ((bits >> 16) & 1)
        return UInt16((bits &+ rounding) >> 16)
    }
}

extension Array where Element == UInt8 {
    mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }
}
