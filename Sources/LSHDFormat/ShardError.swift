/// A problem found at a place in a shard's payload: which kind of problem, where, and why.
///
/// `offset` is a byte offset into the decompressed payload. It is nil only when no payload
/// position applies (the file could not be opened or read). The format layer uses it with the rules
/// of LSHD v1 (`ShardError`); the pipeline with a wider kind that adds zstd and I/O failures.
public struct PayloadError<Kind: Sendable & Equatable>: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong.
    public var kind: Kind
    /// Payload byte offset where it was found.
    public var offset: UInt64?
    /// What is wrong, without the row or offset.
    public var problem: String
    /// The row (counting every row from 0) the problem belongs to, when it belongs to one.
    public var row: UInt64?

    /// Creates an error.
    public init(_ kind: Kind, at offset: UInt64?, _ problem: String, row: UInt64? = nil) {
        self.kind = kind
        self.offset = offset
        self.problem = problem
        self.row = row
    }

    /// The same problem under a wider kind (`convert` maps the kind).
    public init<Narrower>(_ other: PayloadError<Narrower>, kind convert: (Narrower) -> Kind) {
        self.init(convert(other.kind), at: other.offset, other.problem, row: other.row)
    }

    /// A sentence a person understands, e.g. `label 57 out of range [0, 50) in row 1203`.
    public var reason: String {
        row.map { "\(problem) in row \($0)" } ?? problem
    }

    /// `reason at offset N`.
    public var description: String {
        offset.map { "\(reason) at offset \($0)" } ?? reason
    }

    /// The same error for a parser that started `bytes` into the payload and `rows` rows in.
    public func shifted(bytes: UInt64, rows: UInt64) -> PayloadError {
        var copy = self
        copy.offset = offset.map { $0 + bytes }
        copy.row = row.map { $0 + rows }
        return copy
    }
}

/// The rule of LSHD v1 a payload broke. Raw values are stable: they appear in JSON reports.
public enum ShardRule: String, Sendable, CaseIterable {
    case badMagic = "bad_magic"
    case unsupportedVersion = "unsupported_version"
    case unknownLogitDType = "unknown_logit_dtype"
    case unknownLabelDType = "unknown_label_dtype"
    case numClassesOutOfRange = "num_classes_out_of_range"
    case metaTooLong = "meta_too_long"
    case metaNotJSONObject = "meta_not_json_object"
    case labelOutOfRange = "label_out_of_range"
    case truncated = "truncated"
    case trailingBytes = "trailing_bytes"
    case numRowsMismatch = "num_rows_mismatch"
}

/// Why a payload is invalid: the rule it broke, where, and how. `ShardError.Kind` is `ShardRule`.
public typealias ShardError = PayloadError<ShardRule>

/// What stops the parser: the payload broke a rule, or the bytes' source (the label reader, or the
/// producer passed to `ShardParser.fill`) failed, with that source's own error.
public enum ShardParseError: Error {
    /// The payload broke a rule of the format.
    case invalid(ShardError)
    /// The source of the bytes failed; its error, unchanged.
    case sourceFailed(any Error)
}
