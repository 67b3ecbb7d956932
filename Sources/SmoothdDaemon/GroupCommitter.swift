import Dispatch
import Synchronization

/// Group commit: shards whose records are ready while a batch is being made durable wait, and are committed
/// together as the next batch (``SpoolStore/commitBatch(_:)``: one `fsync` per record file and one of each
/// directory per batch). A batch is whatever has been submitted by the time the previous one ends, at most
/// ``maximumBatch``; a lone shard starts its batch at once, so batching adds no latency at low rates and needs no
/// timer. Batches run one at a time on one thread of the committer's own.
///
/// `Sendable`: the queue is behind a `Mutex`; the dispatch queue is thread-safe.
final class GroupCommitter: Sendable {
    /// The most shards committed in one batch (bounding the open temporary files and the wait of the last).
    static let maximumBatch = 128

    private struct Waiting: Sendable {
        var commit: PreparedCommit
        var store: SpoolStore
        var done: @Sendable (ClaimDisposition) -> Void
    }

    private struct State {
        var queue: [Waiting] = []
        var running = false
        var batches = 0
        var committed = 0
    }

    private let state = Mutex(State())
    private let thread = DispatchQueue(label: "smoothd.group-commit")

    init() {}

    /// Batches run so far and the shards they committed (for tests and the benchmark's log).
    var counts: (batches: Int, shards: Int) { state.withLock { ($0.batches, $0.committed) } }

    /// Queues `commit` (of a shard of `store`); `done` is called with its disposition once its batch has ended,
    /// on the committer's thread, after the commit gate it holds was ended.
    func submit(_ commit: PreparedCommit, in store: SpoolStore, done: @escaping @Sendable (ClaimDisposition) -> Void) {
        let start = state.withLock { s -> Bool in
            s.queue.append(Waiting(commit: commit, store: store, done: done))
            guard !s.running else { return false }
            s.running = true
            return true
        }
        if start { thread.async { self.drain() } }
    }

    /// ``submit(_:in:done:)`` and waits for the disposition. Blocking.
    func commitAndWait(_ commit: PreparedCommit, in store: SpoolStore) -> ClaimDisposition {
        let finished = DispatchSemaphore(value: 0)
        let result = Mutex<ClaimDisposition?>(nil)
        submit(commit, in: store) { disposition in
            result.withLock { $0 = disposition }
            finished.signal()
        }
        finished.wait()
        return result.withLock { $0! }
    }

    /// What is left to do once a batch has ended: end its gate and report. Holds no reference to the store, so
    /// that a store given up after its last commit (a test's "crash") is closed before anyone hears of it.
    private struct Completion {
        var gate: CommitGate
        var done: @Sendable (ClaimDisposition) -> Void
        var result: ClaimDisposition
    }

    /// Runs batches until the queue is empty.
    private func drain() {
        while let completions = runNextBatch() {
            for completion in completions {
                completion.gate.end()
                completion.done(completion.result)
            }
        }
    }

    /// Takes the next batch off the queue and commits it; nil (and not running any more) when the queue is empty.
    private func runNextBatch() -> [Completion]? {
        let batch = state.withLock { s -> [Waiting] in
            guard let first = s.queue.first else {
                s.running = false
                return []
            }
            // One batch: consecutive commits of one store and one totals (in the daemon, always all of them).
            var n = 0
            while n < min(s.queue.count, GroupCommitter.maximumBatch), s.queue[n].store === first.store,
                  s.queue[n].commit.totals === first.commit.totals {
                n += 1
            }
            let batch = Array(s.queue.prefix(n))
            s.queue.removeFirst(n)
            s.batches += 1
            s.committed += n
            return batch
        }
        guard let store = batch.first?.store else { return nil }
        let results = store.commitBatch(batch.map(\.commit))
        return zip(batch, results).map { Completion(gate: $0.commit.gate, done: $0.done, result: $1) }
    }
}
