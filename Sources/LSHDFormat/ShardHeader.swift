import SmoothdJSON

/// How logits are stored.
public enum LogitDType: UInt8, Sendable, CaseIterable {
    /// IEEE binary32.
    case float32 = 1
    /// IEEE binary16.
    case float16 = 2
    /// bfloat16: the top 16 bits of a binary32.
    case bfloat16 = 3

    /// Bytes per logit.
    public var byteWidth: Int { self == .float32 ? 4 : 2 }
    /// The name used in reports.
    public var name: String {
        switch self {
        case .float32: return "float32"
        case .float16: return "float16"
        case .bfloat16: return "bfloat16"
        }
    }
}

/// How labels are stored.
public enum LabelDType: UInt8, Sendable, CaseIterable {
    /// Signed 32-bit.
    case int32 = 1
    /// Signed 64-bit.
    case int64 = 2

    /// Bytes per label.
    public var byteWidth: Int { self == .int32 ? 4 : 8 }
    /// The name used in reports.
    public var name: String { self == .int32 ? "int32" : "int64" }
}

/// The fixed part of an LSHD v1 payload plus its metadata.
public struct ShardHeader: Sendable, Equatable {
    /// The only version this reader understands.
    public static let supportedVersion: UInt16 = 1
    /// Size of the fixed header that precedes the metadata.
    public static let fixedSize = 32
    /// Smallest and largest class count the format allows.
    public static let classCountRange: ClosedRange<Int> = 2...16_777_216
    /// Largest metadata the format allows.
    public static let maximumMetaLength = 1_048_576

    /// Logit storage type.
    public var logitDType: LogitDType
    /// Label storage type.
    public var labelDType: LabelDType
    /// K, the number of classes (logits per row).
    public var numClasses: Int
    /// Rows whose label equals this are skipped.
    public var ignoreIndex: Int64
    /// The stated row count, or nil when the writer left it at 0 (not stated).
    public var statedRows: UInt64?
    /// The producer's metadata object, or nil when it was empty.
    public var meta: JSONValue?
    /// Length of the metadata in bytes.
    public var metaLength: Int

    /// Creates a header.
    public init(
        logitDType: LogitDType, labelDType: LabelDType, numClasses: Int, ignoreIndex: Int64 = -100,
        statedRows: UInt64? = nil, meta: JSONValue? = nil, metaLength: Int = 0
    ) {
        self.logitDType = logitDType
        self.labelDType = labelDType
        self.numClasses = numClasses
        self.ignoreIndex = ignoreIndex
        self.statedRows = statedRows
        self.meta = meta
        self.metaLength = metaLength
    }

    /// Bytes of logits in one row.
    public var rowLogitBytes: Int { numClasses * logitDType.byteWidth }
    /// Payload offset of the first block header.
    public var firstBlockOffset: UInt64 { UInt64(Self.fixedSize + metaLength) }
}
