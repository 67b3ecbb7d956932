#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization

/// A test seam in the file-system layer: makes chosen calls of ``DirectoryHandle`` fail with a chosen `errno`
/// (as a full disk, a read-only remount or a failing disk would), and lets a test act between a shard's
/// evaluation and its commit. Production code never creates one; a `nil` injector costs one branch per call.
///
/// `Sendable`: all state is behind a `Mutex`.
final class FaultInjector: Sendable {
    /// The calls that can be made to fail.
    enum Operation: Sendable, Hashable, CustomStringConvertible {
        /// `openat` of a file for reading (`openRegularFile`).
        case open
        /// `openat(O_CREAT)` of a temporary file in `writeAtomically`.
        case create
        /// `write` in `writeAtomically`.
        case write
        /// `fsync` of a file in `writeAtomically`.
        case fileSync
        /// `fsync` of a directory (`sync()`).
        case directorySync
        /// `renameat`/`renameat2` (`rename`, and the rename in `writeAtomically`).
        case rename

        var description: String {
            switch self {
            case .open: "open"
            case .create: "create"
            case .write: "write"
            case .fileSync: "fsync"
            case .directorySync: "fsync (directory)"
            case .rename: "rename"
            }
        }
    }

    private struct Rule {
        var operation: Operation
        var matching: String?
        var errorNumber: Int32
        var remaining: Int?
    }

    private struct State {
        var rules: [Rule] = []
        var injected: [Operation: Int] = [:]
        var afterEvaluation: (@Sendable (String) -> Void)?
        var crashAt: GroupCommitStep?
    }

    private let state = Mutex(State())

    init() {}

    /// From now on, `operation` on a name (or directory path) containing `matching` (any name when `nil`) fails
    /// with `errorNumber`: `times` times, or until ``clear()`` when `times` is `nil`.
    func fail(_ operation: Operation, with errorNumber: Int32, matching: String? = nil, times: Int? = nil) {
        state.withLock { $0.rules.append(Rule(operation: operation, matching: matching, errorNumber: errorNumber, remaining: times)) }
    }

    /// Removes every rule.
    func clear() { state.withLock { $0.rules.removeAll() } }

    /// How many failures of `operation` were injected so far.
    func injected(_ operation: Operation) -> Int { state.withLock { $0.injected[operation] ?? 0 } }

    /// Called with the instance name after a shard was evaluated and before the daemon checks whether the file
    /// changed and commits (tests append to the file here to simulate a producer still writing).
    func setAfterEvaluation(_ hook: (@Sendable (String) -> Void)?) { state.withLock { $0.afterEvaluation = hook } }

    /// The `errno` to fail `operation` on `name` with, if a rule says so (consuming one of its `times`).
    func check(_ operation: Operation, _ name: String) -> Int32? {
        state.withLock { s in
            guard let index = s.rules.firstIndex(where: { rule in
                rule.operation == operation && (rule.matching.map { name.contains($0) } ?? true) && (rule.remaining ?? 1) > 0
            }) else { return nil }
            if let remaining = s.rules[index].remaining { s.rules[index].remaining = remaining - 1 }
            s.injected[operation, default: 0] += 1
            return s.rules[index].errorNumber
        }
    }

    /// From now on, every group commit stops dead right after `step` (`nil`: never), leaving the files as a
    /// `kill -9` at that moment would: nothing cleaned up, nothing counted or reported (its shards come back
    /// ``ClaimDisposition/abandoned(_:)``). Tests then recover from the directories as a new start would.
    func crash(after step: GroupCommitStep?) { state.withLock { $0.crashAt = step } }

    /// Whether a group commit is to stop right after `step`.
    func crashes(after step: GroupCommitStep) -> Bool { state.withLock { $0.crashAt == step } }

    /// Runs the after-evaluation hook, if any.
    func evaluated(_ instance: String) {
        let hook = state.withLock { $0.afterEvaluation }
        hook?(instance)
    }
}
