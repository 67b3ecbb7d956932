import Foundation
import LSHDFormat
import SmoothdMetrics
import Synchronization
import Zstd

/// Evaluates shards through a bounded-memory, multi-threaded pipeline:
/// compressed bytes → (zstd, per frame group) → payload bytes → (parser) → chunks of whole rows →
/// (worker threads, row kernel) → per-chunk accumulators → (exact merge) → one accumulator.
///
/// Frames are decoded in parallel when a shard has several: each frame group after the first is parsed
/// on the guess that it starts at a block boundary (which writers that align frames to blocks, like
/// `Scripts/lshd.py`, guarantee). The guess is checked when the groups are joined in payload order; a
/// group whose guess was wrong is parsed again from the true state, so results never depend on it.
/// Sums are exact, so results are bit-identical for any thread count and memory budget.
public final class ShardEvaluator: Sendable {
    /// The options in force.
    public let options: EvaluationOptions

    /// Creates an evaluator.
    public init(options: EvaluationOptions) {
        self.options = options
    }

    /// Evaluates the shard at `path` (named `path` in the result). Blocking.
    public func evaluate(path: String, progress: ProgressCounter? = nil) -> ShardOutcome {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            return .failure(ShardFailure(shard: path, error: EvaluationError(.ioError, at: nil, "cannot open: \(errnoText())"), compressedBytes: 0, payloadBytes: 0))
        }
        defer { close(fd) }
        return evaluate(fileDescriptor: fd, displayName: path, progress: progress)
    }

    /// Evaluates the open regular file `fd` (read with `pread`, so its offset is untouched). Blocking.
    public func evaluate(fileDescriptor fd: Int32, displayName: String, progress: ProgressCounter? = nil) -> ShardOutcome {
        let started = DispatchTime.now().uptimeNanoseconds
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            return .failure(ShardFailure(shard: displayName, error: EvaluationError(.ioError, at: nil, "cannot stat: \(errnoText())"), compressedBytes: 0, payloadBytes: 0))
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            return .failure(ShardFailure(shard: displayName, error: EvaluationError(.ioError, at: nil, "not a regular file"), compressedBytes: 0, payloadBytes: 0))
        }
        let size = UInt64(info.st_size)
        _ = posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)  // a hint for read-ahead; failure is harmless
        let run = EvaluationRun(shard: displayName, fd: fd, fileSize: size, options: options, progress: progress)
        let result = run.execute()
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        switch result {
        case .success(let output):
            return .success(ShardSummary(shard: displayName, header: output.header, accumulator: output.accumulator, compressedBytes: size,
                                         payloadBytes: output.payloadBytes, frames: run.plan.frameCount, seconds: seconds,
                                         labelsDigest: output.labels))
        case .failure(let failure):
            return .failure(failure)
        }
    }
}

/// Compressed bytes read so far, for progress displays on another thread.
public final class ProgressCounter: Sendable {
    private let bytes = Atomic<UInt64>(0)
    /// Creates a counter at zero.
    public init() {}
    /// Bytes read so far.
    public var value: UInt64 { bytes.load(ordering: .relaxed) }
    func add(_ n: Int) { bytes.add(UInt64(n), ordering: .relaxed) }
}

func errnoText() -> String { String(cString: strerror(errno)) }
