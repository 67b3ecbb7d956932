import LSHDFormat
import SmoothdRuns

/// Why a shard could not be evaluated: a rule of the format it broke, or a failure of the layer that
/// reads it (zstd, the file). The one kind from the pipeline to the error record; `name` is what
/// reports write (`label_out_of_range`, `zstd_error`, `io_error`, …), stable across versions.
public enum FailureKind: Sendable, Hashable, CustomStringConvertible {
    /// The payload breaks a rule of LSHD v1.
    case format(ShardRule)
    /// zstd rejected the compressed stream (corrupt, or a window above the decoder's limit).
    case zstdError
    /// The file could not be opened, inspected or read.
    case ioError
    /// The shard's meta breaks a rule of runs (a non-scalar group-by key, unusable ranks).
    case run(RunRule)
    /// Rows with a non-finite logit, under `--fail-on-nonfinite`.
    case nonfiniteRows

    /// Every kind, in report order.
    public static let allCases: [FailureKind] = ShardRule.allCases.map { .format($0) } + [.zstdError, .ioError]
        + RunRule.allCases.map { .run($0) } + [.nonfiniteRows]

    /// The kind as reports write it.
    public var name: String {
        switch self {
        case .format(let rule): return rule.rawValue
        case .zstdError: return "zstd_error"
        case .ioError: return "io_error"
        case .run(let rule): return rule.rawValue
        case .nonfiniteRows: return "nonfinite_rows"
        }
    }

    /// The kind a report names `name`, if any.
    public init?(name: String) {
        guard let kind = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = kind
    }

    /// `name`.
    public var description: String { name }
}

/// The first problem of a shard in payload order, with where it was found.
public typealias EvaluationError = PayloadError<FailureKind>

extension PayloadError where Kind == FailureKind {
    /// A format error, as a shard's failure.
    init(_ error: ShardError) {
        self.init(error, kind: { .format($0) })
    }

    /// The parser's error: a format error, or the failure of the pipeline code that fed it.
    init(_ error: ShardParseError) {
        switch error {
        case .invalid(let invalid): self.init(invalid)
        case .sourceFailed(let failure as EvaluationError): self = failure
        case .sourceFailed(let other): preconditionFailure("pipeline parser fed by an unexpected source: \(other)")
        }
    }
}
