/// Why a shard is invalid, where in its payload that was found, and which rule it broke.
///
/// `offset` is a byte offset into the decompressed payload. It is nil only when no payload
/// position applies (the file could not be opened or read).
public struct ShardError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The rule that was broken. Raw values are stable: they appear in JSON reports.
    public enum Kind: String, Sendable, CaseIterable {
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
        case zstdError = "zstd_error"
        case ioError = "io_error"
    }

    /// The broken rule.
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

    /// A sentence a person understands, e.g. `label 57 out of range [0, 50) in row 1203`.
    public var reason: String {
        row.map { "\(problem) in row \($0)" } ?? problem
    }

    /// `reason at offset N`.
    public var description: String {
        offset.map { "\(reason) at offset \($0)" } ?? reason
    }

    /// The same error for a parser that started `bytes` into the payload and `rows` rows in.
    public func shifted(bytes: UInt64, rows: UInt64) -> ShardError {
        var copy = self
        copy.offset = offset.map { $0 + bytes }
        copy.row = row.map { $0 + rows }
        return copy
    }
}
