import LSHDFormat
import SmoothdMetrics

/// A shard that was read to its end marker and passed every check.
public struct ShardSummary: Sendable {
    /// The shard as named by the caller (the path given on the command line, or the spool file name).
    public var shard: String
    /// Its header and metadata.
    public var header: ShardHeader
    /// Its metric state.
    public var accumulator: MetricAccumulator
    /// Size of the compressed file.
    public var compressedBytes: UInt64
    /// Size of the decompressed payload.
    public var payloadBytes: UInt64
    /// zstd frames in the file.
    public var frames: Int
    /// Wall-clock seconds spent on it.
    public var seconds: Double
    /// The digest of its labels, ignored rows included (`LabelDigest`).
    public var labelsDigest = LabelDigest()
}

/// A shard that could not be evaluated, with the first problem found in payload order.
public struct ShardFailure: Error, Sendable, CustomStringConvertible {
    /// The shard as named by the caller.
    public var shard: String
    /// What was wrong and where.
    public var error: EvaluationError
    /// Size of the compressed file (0 when it could not be read).
    public var compressedBytes: UInt64
    /// Payload bytes decoded before the problem.
    public var payloadBytes: UInt64

    /// What kind of problem it was.
    public var kind: FailureKind { error.kind }
    /// Payload byte offset of the problem.
    public var offset: UInt64? { error.offset }
    /// The reason, without the offset.
    public var reason: String { error.reason }

    /// `SHARD: reason at offset N`.
    public var description: String { "\(shard): \(error)" }
}

/// The result of evaluating one shard.
public enum ShardOutcome: Sendable {
    /// Valid: its metrics.
    case success(ShardSummary)
    /// Invalid or unreadable: why.
    case failure(ShardFailure)

    /// The shard's name either way.
    public var shard: String {
        switch self {
        case .success(let s): return s.shard
        case .failure(let f): return f.shard
        }
    }
}
